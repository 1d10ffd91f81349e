"""Repository secret scan for ``make lint``: ``detect-secrets`` over the tracked files, compared
with the committed baseline ``.secrets.baseline``. Exit 1 and name file and line of every
finding the baseline does not hold (a new secret, or a new false positive to add to it).

Only the (file, hashed secret) pairs are compared, so edits that move a known finding to another
line do not fail the scan. To accept a false positive after checking it by eye:
``.venv/bin/detect-secrets scan --baseline .secrets.baseline`` (updates the baseline in place),
then commit the baseline. Usage: ``python tests/assurance/secrets_scan.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / ".secrets.baseline"
EXCLUDE = (
    r"(^|/)(\.venv|collections|tests/output|\.git|node_modules|build|dist|.*\.egg-info)/"
    r"|^\.secrets\.baseline$"  # the baseline holds the hashes it compares against
)


def known(baseline: dict[str, object]) -> set[tuple[str, str]]:
    results = baseline.get("results", {})
    assert isinstance(results, dict)
    return {(name, item["hashed_secret"]) for name, items in results.items() for item in items}


def main() -> int:
    tool = Path(sys.executable).with_name("detect-secrets")
    scan = subprocess.run(
        [str(tool), "scan", "--exclude-files", EXCLUDE],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = json.loads(scan.stdout)
    accepted = known(json.loads(BASELINE.read_text()))
    new = [
        f"{name}:{item['line_number']}: {item['type']}"
        for name, items in sorted(found["results"].items())
        for item in items
        if (name, item["hashed_secret"]) not in accepted
    ]
    for line in new:
        print(f"possible secret not in .secrets.baseline: {line}")
    print(f"secret scan: {sum(len(v) for v in found['results'].values())} findings, "
          f"{len(new)} not in the baseline")  # fmt: skip
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
