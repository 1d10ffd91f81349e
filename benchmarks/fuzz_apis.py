"""Long fuzzing profile of every app's API (the CI profile is tests/assurance/test_fuzz_apis.py):
the same stack of real processes on loopback, schemathesis with the coverage phase (every
boundary value of every parameter) plus fuzzing and stateful phases, up to ``--seconds`` per
app and caller; then every log is searched for the run's secrets. Prints one line of figures per
target and the FAILURES section of any run that found something; exit 1 if any did.

    .venv/bin/python benchmarks/fuzz_apis.py [--seconds 600] [--examples 200] [--seed N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "apps")]

from tests.assurance.fuzzing import LONG, Profile, failures_of, fuzz, secrets_files, targets  # noqa: E402
from tests.assurance.logscan import scan_logs  # noqa: E402
from tests.assurance.stack import Stack  # noqa: E402
from tests.assurance.test_fuzz_apis import fund  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=LONG.max_seconds)
    parser.add_argument("--examples", type=int, default=LONG.max_examples)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--only", default="", help="fuzz only targets whose name has this")
    args = parser.parse_args()
    profile = Profile(LONG.phases, args.examples, args.seconds)
    root = Path(tempfile.mkdtemp(prefix="fuzz-long-"))
    started = time.monotonic()
    stack = Stack(root).start()
    print(f"stack up in {time.monotonic() - started:.0f} s", flush=True)
    failed = 0
    try:
        fund(stack, "alice")
        for target in targets(stack):
            if args.only and args.only not in target.name:
                continue
            workdir = root / "fuzz"
            workdir.mkdir(exist_ok=True)
            result = fuzz(target, profile, workdir, secrets_files(stack, workdir), args.seed)
            print(
                f"{target.name}: {result.operations}/{result.selected} operations, "
                f"{result.cases} cases, {result.failures} failures in {result.seconds:.0f} s "
                f"(seed {result.seed})",
                flush=True,
            )
            if result.returncode != 0:
                failed += 1
                print(failures_of(result.output), flush=True)
        leaks = scan_logs(stack.logs(), stack.secrets)
        print(f"logs: {len(stack.logs())} files searched for {len(stack.secrets)} secrets, "
              f"{len(leaks)} found")  # fmt: skip
        for leak in leaks:
            print(f"  {leak}")
        failed += bool(leaks)
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"total {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
