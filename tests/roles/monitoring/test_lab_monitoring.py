"""The monitoring role converged for real on a test host of its own (one-host) lab: Prometheus
and the node exporter from Debian, the alert rules loaded, the textfile metrics scraped, and a
second run changes nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scnode_lab.pytest_plugin import LabHandle, missing_requirements

pytestmark = [
    pytest.mark.testhosts,
    # a lab of its own, 4-10 min: beyond CI's budget next to the converged node lab;
    # `make test-long` runs it
    pytest.mark.long_lab,
    pytest.mark.timeout(900),
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]

ROOT = Path(__file__).resolve().parents[3]
_RECAP = r"^{host}\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)"


def _playbook(lab: LabHandle, work: Path) -> str:
    host = lab.hosts["mon"].fqdn
    play = work / "play.yml"
    play.write_text(
        f"- name: Monitoring\n  hosts: {host}\n  gather_facts: true\n"
        "  roles:\n    - role: satoshiware.scnode.monitoring\n"
    )
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / "collections")
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(lab.inventory)]
    run = subprocess.run(
        [*argv, str(play)], capture_output=True, text=True, env=env, timeout=700, check=False
    )
    return run.stdout + run.stderr


def _recap(output: str, host: str) -> tuple[int, int]:
    match = re.search(_RECAP.format(host=re.escape(host)), output, re.M)
    assert match, output[-3000:]
    return int(match.group(1)), int(match.group(2))


def _api(lab: LabHandle, path: str) -> Any:
    out = lab.ssh("mon", f"curl -sf 'http://127.0.0.1:9090{path}'", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def test_prometheus_loads_the_rules_and_scrapes_the_node(
    scnode_lab_factory: Callable[..., LabHandle], tmp_path: Path
) -> None:
    lab = scnode_lab_factory(("mon",))
    mon = lab.hosts["mon"]
    lab.ssh("mon", "mkdir -p /var/backups/scnode && touch "
            "/var/backups/scnode/chain-bitcoin-wallet-20261126T030000Z.manifest.json")  # fmt: skip
    started = time.monotonic()
    first = _playbook(lab, tmp_path)
    first_seconds = time.monotonic() - started
    changed, failed = _recap(first, mon.fqdn)
    assert failed == 0 and changed > 0, first[-4000:]

    deadline = time.monotonic() + 120
    series: list[Any] = []
    while time.monotonic() < deadline:
        got = _api(lab, "/api/v1/query?query=scnode_backup_last_success_timestamp_seconds")
        series = got["data"]["result"] if got else []
        if series:
            break
        time.sleep(3)
    assert [s["metric"]["backup"] for s in series] == ["chain-bitcoin-wallet"]
    rules = _api(lab, "/api/v1/rules")["data"]["groups"]
    assert len([r for g in rules for r in g["rules"] if r["type"] == "alerting"]) == 12
    up = _api(lab, "/api/v1/query?query=up")["data"]["result"]
    assert {r["metric"]["job"]: r["value"][1] for r in up} == {"prometheus": "1", "node": "1"}
    listening = lab.ssh("mon", "ss -Htln").stdout
    assert "127.0.0.1:9090" in listening and "127.0.0.1:9100" in listening
    assert "0.0.0.0:9090" not in listening and "*:9100" not in listening

    started = time.monotonic()
    second = _playbook(lab, tmp_path)
    second_seconds = time.monotonic() - started
    assert _recap(second, mon.fqdn) == (0, 0), second[-4000:]
    print(f"monitoring converge: first {first_seconds:.1f} s, second {second_seconds:.1f} s")
