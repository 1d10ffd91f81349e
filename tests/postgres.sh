#!/usr/bin/env bash
# Make sure a local PostgreSQL (Debian's package) runs for the ledger tests, with a superuser
# role for the calling user, and print the SQLAlchemy URL the tests take from
# SCNODE_TEST_POSTGRES_URL. Only the unix socket is used; each test makes and drops its own
# database. Everything but the URL goes to stderr.
#
# The URL leaves through fd 3 (the caller's command substitution). Every command that may leave a
# daemon behind (pg_createcluster, pg_ctlcluster) runs with fd 3 closed: a postmaster that
# inherited it would hold the caller's pipe open and `$(tests/postgres.sh)` would never return.
set -euo pipefail
exec 3>&1 1>&2

if ! command -v pg_lsclusters >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
cluster=$(pg_lsclusters -h | head -n 1)
if [ -z "$cluster" ]; then
  pg_createcluster "$(ls /usr/lib/postgresql | sort -n | tail -n 1)" main 3>&-
  cluster=$(pg_lsclusters -h | head -n 1)
fi
read -r version name port status _ <<<"$cluster"
case "$status" in
  online*) ;;
  *) timeout 120 pg_ctlcluster "$version" "$name" start 3>&- ;;
esac
user=$(id -un)
if ! su postgres -c "psql -p $port -tAc \"SELECT 1 FROM pg_roles WHERE rolname = '$user'\"" | grep -q 1; then
  su postgres -c "createuser -p $port --superuser $user"
fi
echo "postgresql+psycopg://$user@/postgres?host=/var/run/postgresql&port=$port" >&3
