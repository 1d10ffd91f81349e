#!/usr/bin/env bash
# Run the molecule scenario of every role (molecule/<role>/), or only the scenarios named as
# arguments (e.g. `tests/molecule.sh common _driver_smoke`). Directories starting with `_`
# (examples, smoke tests) and `shared` (the driver) are skipped unless named. The exit code is
# non-zero if any of them failed.
#
# MOLECULE_JOBS (default 2) scenarios run at once: each has its own lab (test hosts, network
# namespace, subnet, mirror), so they do not meet; much of a scenario's time is spent waiting
# on SSH round trips and package installs, not on the CPU. Each scenario's output goes to
# tests/output/molecule/<name>.log and is printed whole when the scenario ends, so the logs of
# parallel runs never interleave.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
jobs=${MOLECULE_JOBS:-2}
logs=tests/output/molecule
mkdir -p "$logs"

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

run_one() {
  local name=$1 start rc
  start=$(date +%s)
  molecule test -s "$name" >"$logs/$name.log" 2>&1
  rc=$?
  {
    echo "=== molecule test -s $name"
    cat "$logs/$name.log"
    if [ $rc -eq 0 ]; then
      echo "=== $name: passed in $(($(date +%s) - start)) s"
    else
      echo "=== $name: FAILED after $(($(date +%s) - start)) s (exit $rc)"
    fi
  } | flock "$logs/.print" cat
  return $rc
}

declare -A pids=()
failed=()
wait_one() {
  local pid name
  wait -n -p pid "${!pids[@]}"
  local rc=$?
  name=${pids[$pid]}
  unset "pids[$pid]"
  [ $rc -eq 0 ] || failed+=("$name")
}
for name in "${scenarios[@]}"; do
  while [ ${#pids[@]} -ge "$jobs" ]; do wait_one; done
  run_one "$name" &
  pids[$!]=$name
done
while [ ${#pids[@]} -gt 0 ]; do wait_one; done

echo "molecule: $((${#scenarios[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed scenarios: ${failed[*]}"
  exit 1
fi
