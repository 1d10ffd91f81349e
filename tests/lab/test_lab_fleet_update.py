"""playbooks/fleet_update.yml on three test hosts of its own lab, one made to fail.

Each host is a small SC Node: Bitcoin Core (the lab mirror's simnet build, release 30.1) and
the chain API (the apps wheel of the committed tree, release A), with a wallet to back up —
the cheapest set that makes every gate real: the apps' /healthz, the daemon synced, the backup.
n1 and n3 have a block mined now; n2 has only the genesis block, told by its control API to
report itself synced — a node that looks fine until its daemon restarts, then is back in
initial block download (headers behind, an old tip): the stand-in that reports not-synced.

1. The rollout to Bitcoin Core 30.2 and apps release B in batches [1, 2] (limit 50 %): n1
   and n3 run 30.2 and B, n2 fails its daemon gate after the update and is rolled back to
   30.1 and release A, its chain API answers again; the summary names it; each node has a
   backup made before its update.
2. A rollout back to 30.1 in batches [2, 1] (limit 25 %): n1 updates, n2 fails its pre-check
   (not synced, nothing touched) — 50 % of the batch — so the rollout stops before the last
   batch: n3 still runs 30.2, and the summary says it was not reached.
"""

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

import pyrage  # type: ignore[import-untyped]
import pytest
import yaml

from scnode_lab import mirror
from scnode_lab.inventory import connection_vars
from scnode_lab.pytest_plugin import LabHandle, missing_requirements

pytestmark = [
    pytest.mark.testhosts,
    pytest.mark.slow,
    # three hosts pip-installing two app releases each: ~10 min on an idle machine, 31 min at
    # load 20 — outside CI's budget; `make test-long` runs it
    pytest.mark.long_lab,
    pytest.mark.timeout(2400),
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOSTS = ("n1", "n2", "n3")
API_PORT = 8401
CONVERGE = """
- name: A small SC Node per host (Bitcoin Core and its chain API), release 30.1 and apps A
  hosts: scnode
  become: true
  tasks:
    - name: age, for the backups the rollout makes first
      ansible.builtin.apt:
        name: age
        state: present
        update_cache: true

    - name: Bitcoin Core (simnet build from the lab's mirror)
      ansible.builtin.include_role:
        name: satoshiware.scnode.chain_node
      vars:
        chain_node_chain: bitcoin

    - name: The chain API
      ansible.builtin.include_role:
        name: satoshiware.scnode.scnode_apps
      vars:
        scnode_apps_components: [chain_api]
        scnode_apps_summary: false
"""
SUMMARY = re.compile(
    r"fleet update( STOPPED)?: (\d+) updated, (\d+) rolled back, (\d+) failed, "
    r"(\d+) skipped, (\d+) not reached"
)


def _snapshot(dest: Path) -> Path:
    """The committed apps/ sources (other work in progress must not change the wheel)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "HEAD", "apps"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "apps"


class Fleet:
    def __init__(self, lab: LabHandle, work: Path) -> None:
        self.lab = lab
        self.work = work
        self.fqdn = {name: host.fqdn for name, host in lab.hosts.items()}
        sums = json.loads((lab.lab.state_dir / mirror.MIRROR_FILE).read_text())
        self.mirror_url = sums["url"] + "/bin/bitcoin-core-{version}"
        self.sums = {v: sums["sums"][f"bin/bitcoin-core-{v}/SHA256SUMS"] for v in ("30.1", "30.2")}
        identity = pyrage.x25519.Identity.generate()
        hosts = {
            self.fqdn[name]: {
                "ansible_host": lab.hosts[name].ip,
                "chain_node_overrides": {"bitcoin": self.release("30.1")},
            }
            for name in HOSTS
        }
        inventory = {
            "all": {
                "vars": {
                    **connection_vars(lab.name, lab.key),
                    "common_firewall_enabled": False,
                    "scnode_apps_chain_apis": [
                        {"chain": "bitcoin", "prefix": "btc", "port": API_PORT}
                    ],
                    "backup_timer_recipients": [str(identity.to_public())],
                },
                "children": {"scnode": {"hosts": hosts}},
            }
        }
        self.inventory = work / "hosts.yml"
        self.inventory.write_text(yaml.safe_dump(inventory, sort_keys=False))

    def release(self, version: str) -> dict[str, str]:
        return {
            "version": version,
            "download_base_url": self.mirror_url,
            "sha256sums_sha256": self.sums[version],
        }

    def playbook(
        self, playbook: str | Path, *extra: str, callback: str = "default"
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
        env["PATH"] = f"{BIN}:{env['PATH']}"
        env["ANSIBLE_STDOUT_CALLBACK"] = callback
        return subprocess.run(
            [str(BIN / "ansible-playbook"), str(playbook), "-i", str(self.inventory), *extra],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )

    def update(self, **variables: Any) -> tuple[int, list[str], list[str]]:
        """Run fleet_update.yml; its exit code, summary lines and batch verdicts."""
        started = time.monotonic()
        run = self.playbook(
            ROOT / "playbooks" / "fleet_update.yml", "-e", json.dumps(variables), callback="json"
        )
        print(f"fleet_update.yml: {time.monotonic() - started:.0f} s")  # the figures (pytest -s)
        report = json.loads(run.stdout)

        def messages(task_name: str) -> list[Any]:
            return [
                result["msg"]
                for play in report["plays"]
                for task in play["tasks"]
                if task["task"]["name"] == task_name
                for result in task["hosts"].values()
                if "msg" in result
            ]

        summaries = messages("Fleet — summary")
        assert summaries, run.stdout[-6000:] + run.stderr[-2000:]
        return run.returncode, summaries[-1], messages("Fleet — this batch")

    def sh(self, host: str, command: str) -> str:
        return self.lab.ssh(host, command, timeout=120).stdout.strip()

    def control(self, host: str, name: str, **body: Any) -> Any:
        out = self.sh(
            host,
            "curl -s -X POST -H 'Content-Type: application/json' "
            f"--data-binary '{json.dumps(body)}' http://127.0.0.1:9332/{name}",
        )
        return json.loads(out)

    def apps(self, host: str) -> str:
        return self.sh(host, "readlink /opt/scnode-apps/current")

    def bitcoin(self, host: str) -> str:
        return self.sh(host, "readlink /opt/bitcoin/current")

    def healthz(self, host: str) -> str:
        return self.sh(
            host, f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{API_PORT}/healthz"
        )

    def backups(self, host: str) -> set[str]:
        """The backup manifests on the host."""
        names = self.sh(host, "ls /var/backups/scnode 2>/dev/null || true").split()
        return {name for name in names if name.endswith(".manifest.json")}


def line_of(summary: list[str], host: str) -> str:
    found = [line for line in summary if line.startswith(f"{host}: ")]
    assert found, summary
    return found[-1]


def test_fleet_update_rolls_back_the_failing_node_and_stops_over_the_limit(
    scnode_lab_factory: Callable[..., LabHandle], tmp_path: Path
) -> None:
    started = time.monotonic()
    lab = scnode_lab_factory(HOSTS)
    fleet = Fleet(lab, tmp_path)
    release_a = _snapshot(tmp_path / "a")
    release_b = _snapshot(tmp_path / "b")
    marker = release_b / "scnode_chain_api" / "__init__.py"
    marker.write_text(marker.read_text() + "# release B of the fleet update test\n")
    converge = tmp_path / "converge.yml"
    converge.write_text(CONVERGE)

    done = fleet.playbook(converge, "-e", f"scnode_apps_source_dir={release_a}")
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    print(f"converge: {time.monotonic() - started:.0f} s")
    a = {h: fleet.apps(h) for h in HOSTS}
    assert len(set(a.values())) == 1 and all(fleet.bitcoin(h) == "30.1" for h in HOSTS)
    for host in ("n1", "n3"):
        fleet.control(host, "mine", blocks=1)
    # n2: genesis only (an old tip), but told to report itself synced until its daemon restarts
    assert fleet.control("n2", "ibd", active=False) == {"ibd": False}

    # 1. the rollout: n2 fails its gate after the update and is rolled back
    rc, summary, batches = fleet.update(
        fleet_update_batch=[1, 2],
        fleet_update_max_fail_percentage=50,
        fleet_update_apps_source_dir=str(release_b),
        fleet_update_daemons={"bitcoin": fleet.release("30.2")},
        fleet_update_min_free_mb=256,
        fleet_update_gate_retries=6,
        fleet_update_gate_delay=3,
    )
    assert rc == 2, summary
    head = SUMMARY.fullmatch(summary[0])
    assert head and head.groups() == (None, "2", "1", "0", "0", "0"), summary
    assert len(batches) == 2 and "STOPS" not in " ".join(batches), batches
    n2 = line_of(summary, fleet.fqdn["n2"])
    assert "ROLLED_BACK" in n2 and "bitcoin: not synced" in n2, n2
    assert "initialblockdownload True" in n2 and "daemons bitcoin 30.1" in n2, n2
    for host in ("n1", "n3"):
        assert "UPDATED" in line_of(summary, fleet.fqdn[host])
        assert fleet.bitcoin(host) == "30.2"
        assert fleet.apps(host) != a[host] and fleet.healthz(host) == "200"
    b = fleet.apps("n1")
    assert fleet.apps("n3") == b
    # the bad node runs the previous releases again, and answers
    assert fleet.bitcoin("n2") == "30.1" and fleet.apps("n2") == a["n2"]
    assert fleet.healthz("n2") == "200"
    # the new release's virtualenv is kept on n2 for inspection; every node was backed up first
    assert fleet.sh("n2", f"test -d {b} && echo kept") == "kept"
    backups = {h: fleet.backups(h) for h in HOSTS}
    assert all(len(backups[h]) == 1 for h in HOSTS), backups

    # 2. over the limit: n2 (not synced now) fails its pre-check, the rollout stops
    rc, summary, batches = fleet.update(
        fleet_update_batch=[2, 1],
        fleet_update_max_fail_percentage=25,
        fleet_update_apps_source_dir=str(release_b),
        fleet_update_daemons={"bitcoin": fleet.release("30.1")},
        fleet_update_min_free_mb=256,
        fleet_update_gate_retries=6,
        fleet_update_gate_delay=3,
    )
    assert rc == 2, summary
    head = SUMMARY.fullmatch(summary[0])
    assert head and head.groups() == (" STOPPED", "1", "0", "0", "1", "1"), summary
    assert len(batches) == 1 and "THE ROLLOUT STOPS HERE" in batches[0], batches
    n2 = line_of(summary, fleet.fqdn["n2"])
    assert "SKIPPED" in n2 and "pre-check failed: bitcoin: not synced" in n2, n2
    assert "NOT_REACHED" in line_of(summary, fleet.fqdn["n3"])
    assert fleet.bitcoin("n1") == "30.1" and fleet.apps("n1") == b
    assert fleet.bitcoin("n3") == "30.2" and fleet.apps("n3") == b
    assert fleet.bitcoin("n2") == "30.1" and fleet.apps("n2") == a["n2"]
    # only the node that was updated made a backup (a new manifest; retention keeps one a day)
    assert fleet.backups("n1") - backups["n1"]
    assert fleet.backups("n2") == backups["n2"] and fleet.backups("n3") == backups["n3"]
    assert all(fleet.healthz(h) == "200" for h in HOSTS)
    print(f"fleet update test: {time.monotonic() - started:.0f} s")
