"""The shared molecule driver (molecule/shared/) runs a whole scenario on scnode-lab hosts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from scnode_lab import network
from scnode_lab.lab import Lab
from scnode_lab.pytest_plugin import missing_requirements

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.testhosts,
    pytest.mark.slow,
    # On a fresh machine the scenario's create step builds the image once (100-215 s).
    pytest.mark.timeout(900),
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]


def test_driver_smoke_scenario_passes_and_cleans_up() -> None:
    # create → check → converge → idempotence → verify (testinfra) → destroy
    result = subprocess.run(
        [str(REPO / "tests" / "molecule.sh"), "_driver_smoke"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=880,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "6 passed" in output  # 3 testinfra checks on each of the 2 hosts
    assert "molecule: 1 passed, 0 failed" in output
    lab = Lab("molecule-_driver_smoke")
    assert lab.load() is None
    assert network.lab_netns(lab.name) not in network.list_netns()
