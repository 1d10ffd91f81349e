#!/usr/bin/env bash
# Run the molecule scenario of every role (molecule/<role>/), or only the scenarios named as
# arguments (e.g. `tests/molecule.sh common _driver_smoke`). Directories starting with `_`
# (examples, smoke tests) and `shared` (the driver) are skipped unless named. Scenarios run one
# after another on their own test hosts; the exit code is non-zero if any of them failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
  for dir in molecule/*/; do
    name=$(basename "$dir")
    case "$name" in _* | shared) continue ;; esac
    [ -f "$dir/molecule.yml" ] && scenarios+=("$name")
  done
fi
if [ ${#scenarios[@]} -eq 0 ]; then
  echo "molecule: no role scenarios under molecule/"
  exit 0
fi

failed=()
for name in "${scenarios[@]}"; do
  start=$(date +%s)
  echo "=== molecule test -s $name"
  if molecule test -s "$name"; then
    echo "=== $name: passed in $(( $(date +%s) - start )) s"
  else
    echo "=== $name: FAILED after $(( $(date +%s) - start )) s"
    failed+=("$name")
  fi
done

echo "molecule: $(( ${#scenarios[@]} - ${#failed[@]} )) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed scenarios: ${failed[*]}"
  exit 1
fi
