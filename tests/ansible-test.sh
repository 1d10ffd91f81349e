#!/usr/bin/env bash
# Run `ansible-test sanity` or `ansible-test units` on this collection.
#
# ansible-test needs the collection at a real path ending in ansible_collections/<ns>/<name>
# and refuses to run through the collections/ link, so the collection's files (git-tracked and
# untracked-but-not-ignored) are synced into a temporary tree first. Only what ships in the
# collection is synced, plus the collection's own tests (tests/unit/plugins, tests/sanity,
# tests/config.yml): the stand-in daemons, the test-host tool, the apps' sources and the other
# pytest suites have their own gates (ruff, mypy, pytest).
#
# usage: tests/ansible-test.sh sanity|units [extra ansible-test arguments]
set -euo pipefail

command=${1:-}
case "$command" in
  sanity|units) shift ;;
  *) echo "usage: $0 sanity|units [ansible-test arguments]" >&2; exit 2 ;;
esac

repo=$(cd "$(dirname "$0")/.." && pwd)
venv_bin="$repo/.venv/bin"
python_version=3.11

# ansible-test bootstraps pip in its virtualenvs with a get-pip script downloaded from a host
# that is not reachable from here; a cached script of that name is used instead. Ours installs
# pip with the standard library's ensurepip, then lets pip fetch the pinned version from PyPI.
pip_version=$(sed -n "s/^ *pip='\([0-9.]*\)',.*/\1/p" \
  "$("$venv_bin/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py")
pip_version=${pip_version:-24.2}
shim="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ ! -f "$shim" ] || ! grep -q 'scnode ensurepip shim' "$shim"; then
  mkdir -p "$(dirname "$shim")"
  cat > "$shim" <<'PY'
"""scnode ensurepip shim: stands in for get-pip.py, which cannot be downloaded offline."""
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *args])
PY
fi

# A stable location keeps ansible-test's virtualenvs warm between runs.
work=${SCNODE_ANSIBLE_TEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/scnode-ansible-test}
target="$work/ansible_collections/satoshiware/scnode"
mkdir -p "$target"

cd "$repo"
git ls-files -z --cached --others --exclude-standard \
  | grep -zvE '^(collections|simnet|scnode_lab|apps|benchmarks|molecule|\.ci)/' \
  | grep -zvE '^tests/' \
  | while IFS= read -r -d '' path; do [ -e "$path" ] && printf '%s\0' "$path"; done \
  > "$work/files.list"
git ls-files -z --cached --others --exclude-standard -- \
  tests/unit/conftest.py tests/unit/plugins tests/unit/fixtures tests/sanity tests/config.yml \
  | while IFS= read -r -d '' path; do [ -e "$path" ] && printf '%s\0' "$path"; done \
  >> "$work/files.list"
# Files gone from the work tree are removed from the copy too; ansible-test's own output
# (tests/output) survives between runs.
rsync -a --from0 --files-from="$work/files.list" . "$target/"
(
  cd "$target"
  find . -path ./tests/output -prune -o -type f -print0 | sed -z 's|^\./||' | sort -z > "$work/present.list"
  sort -z "$work/files.list" > "$work/wanted.list"
  comm -z -23 "$work/present.list" "$work/wanted.list" | xargs -0 -r rm -f --
  find . -path ./tests/output -prune -o -type d -empty -print0 | xargs -0 -r rmdir --
)

cd "$target"
export PATH="$venv_bin:$PATH"
case "$command" in
  sanity) exec ansible-test sanity --python "$python_version" --color no "$@" ;;
  units) exec ansible-test units --python "$python_version" --color no "$@" ;;
esac
