#!/usr/bin/env bash
# The test stages of `make test` after lint and sanity, as two lanes side by side:
#
#   lane "testhosts":        make testhosts                 (the converged lab, one test at a time)
#   lane "pytest-molecule":  make pytest, then make molecule (whatever pytest's outcome)
#
# The test-host lane mostly waits (SSH round trips, package installs, services starting) while
# pytest mostly computes; molecule follows pytest so that never more than two lanes run. Side by
# side they take about as long as the test-host lane alone instead of the sum of all three.
# Each lane's output goes to tests/output/stages/<lane>.log and is printed whole when the lane
# ends, so the two never interleave. The exit code is non-zero if any stage failed; the failed
# stages are named at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
logs=tests/output/stages
mkdir -p "$logs"
make=${MAKE:-make}

lane() {
  local name=$1 start rc=0 stage
  shift
  start=$(date +%s)
  : >"$logs/$name.log"
  for stage in "$@"; do
    if ! "$make" --no-print-directory "$stage" >>"$logs/$name.log" 2>&1; then
      echo "=== stage $stage FAILED" >>"$logs/$name.log"
      rc=1
    fi
  done
  {
    echo "=== lane $name ($*)"
    cat "$logs/$name.log"
    if [ $rc -eq 0 ]; then
      echo "=== lane $name: passed in $(($(date +%s) - start)) s"
    else
      echo "=== lane $name: FAILED after $(($(date +%s) - start)) s"
    fi
  } | flock "$logs/.print" cat
  return $rc
}

lane testhosts testhosts &
testhosts=$!
lane pytest-molecule pytest molecule &
others=$!

# a line every 5 minutes while the lanes run (their own output comes when each lane ends)
(
  started=$(date +%s)
  while sleep 300; do
    echo "test stages: running for $(($(date +%s) - started)) s ($(uptime | sed 's/.*load/load/'))"
  done
) &
heartbeat=$!
trap 'kill "$heartbeat" 2>/dev/null' EXIT

failed=()
wait "$testhosts" || failed+=("testhosts")
wait "$others" || failed+=("pytest-molecule")
if [ ${#failed[@]} -gt 0 ]; then
  echo "test stages failed in lane(s): ${failed[*]} (see the '=== stage … FAILED' lines above)"
  exit 1
fi
echo "test stages: all passed"
