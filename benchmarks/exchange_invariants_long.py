"""The exchange's combined invariant machine at its long profile (issue 6's "long profile in
benchmarks/"): 400 examples of up to 120 steps on SQLite, 100 on PostgreSQL when
SCNODE_TEST_POSTGRES_URL is set. Prints the wall time and the machine's event counts.

    .venv/bin/python benchmarks/exchange_invariants_long.py [--profile long|ci]

Not a timed test: it runs the same test CI runs, only with many more examples; a failure shows
hypothesis' shrunk counter-example and exits non-zero.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/unit/apps/exchange/test_combined_machine.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="long", choices=["long", "ci"])
    args = parser.parse_args()
    env = dict(os.environ, SCNODE_HYPOTHESIS_PROFILE=args.profile)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", TEST],
        cwd=ROOT,
        env=env,
        check=False,
    )
    where = "SQLite + PostgreSQL" if env.get("SCNODE_TEST_POSTGRES_URL") else "SQLite"
    print(
        f"combined invariant machine, profile {args.profile} ({where}): "
        f"{time.monotonic() - started:.0f} s wall, exit {result.returncode}"
    )
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
