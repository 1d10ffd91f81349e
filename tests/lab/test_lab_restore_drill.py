"""The restore drill of docs/operator-guide.md, end to end on test hosts.

Three Debian trixie test hosts: `peer` stands for the rest of the network (a chain node the
others join, where blocks are mined and from where deposits are paid), `old` is the node that
gets destroyed, `new` the replacement. Both nodes get chain_node (Bitcoin, from the lab's
release mirror of simnet builds) the way site.yml installs it.

Drill: deposits to the old node's wallet → playbooks/backup.yml (fetched to the controller) →
the old host is destroyed (its container stopped for good) → playbooks/restore.yml on the
new host → the same balance, the same addresses and labels, and the next address
the wallet hands out is the one the old node would have given. Then the backup_timer role's
timer on the new host: enabled, and its service makes a backup on the node by itself; and a
rewrite of Core Lightning's emergency.recover (a channel change) makes one too.
"""

from __future__ import annotations

import json
import os
import shlex
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
    pytest.mark.timeout(2400),
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# The peer, the old node and the spare machine that becomes the new node are set up at once,
# the way site.yml installs the chain node; the spare also gets the nightly backup timer.
CONVERGE = """
- name: Chain node as site.yml installs it (Bitcoin only)
  hosts: all
  become: true
  tasks:
    - name: Bitcoin Core (simnet build from the lab's mirror)
      ansible.builtin.include_role:
        name: satoshiware.scnode.chain_node
      vars:
        chain_node_chain: bitcoin

- name: Nightly backups on the spare machine
  hosts: "{{ drill_timer_host }}"
  become: true
  roles:
    - role: satoshiware.scnode.backup_timer
"""


def _ansible(argv: list[str], timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["PATH"] = f"{BIN}:{env['PATH']}"
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"ansible-playbook {argv}:\n{done.stdout[-5000:]}{done.stderr}"
    return done


class Drill:
    def __init__(self, lab: LabHandle, work: Path) -> None:
        self.lab = lab
        self.work = work
        self.fqdn = {name: host.fqdn for name, host in lab.hosts.items()}
        sums = json.loads((lab.lab.state_dir / mirror.MIRROR_FILE).read_text())
        release = {
            "download_base_url": sums["url"] + "/bin/bitcoin-core-{version}",
            "sha256sums_sha256": sums["sums"]["bin/bitcoin-core-30.2/SHA256SUMS"],
        }
        joins_peer = {**release, "addnodes": [f"{lab.hosts['peer'].ip}:8333"]}

        def host(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
            return {
                "ansible_host": lab.hosts[name].ip,
                "chain_node_overrides": {"bitcoin": overrides},
            }

        inventory = {
            "all": {
                "vars": {**connection_vars(lab.name, lab.key), "common_firewall_enabled": False},
                "children": {
                    "drillpeer": {
                        "hosts": {self.fqdn["peer"]: host("peer", {**release, "listen": True})}
                    },
                    "scnode": {
                        "children": {
                            "chain": {
                                "hosts": {
                                    self.fqdn["old"]: host("old", joins_peer),
                                    self.fqdn["new"]: host("new", joins_peer),
                                }
                            }
                        }
                    },
                },
            }
        }
        self.inventory = work / "hosts.yml"
        self.inventory.write_text(yaml.safe_dump(inventory))
        self.converge = work / "converge.yml"
        self.converge.write_text(CONVERGE)

    def playbook(self, playbook: str | Path, limit: str, *extra: str) -> str:
        return _ansible([str(playbook), "-i", str(self.inventory), "--limit", limit, *extra]).stdout

    def sh(self, host: str, command: str) -> str:
        return self.lab.ssh(host, command, timeout=180).stdout

    def rpc(self, host: str, method: str, *params: Any, wallet: str | None = None) -> Any:
        body = json.dumps({"jsonrpc": "1.0", "id": "drill", "method": method, "params": params})
        path = f"/wallet/{wallet}" if wallet else "/"
        out = self.sh(
            host,
            'curl -s --user "$(cat /var/lib/bitcoin/.cookie)" --data-binary '
            f"{shlex.quote(body)} http://127.0.0.1:8332{path}",
        )
        reply = json.loads(out)
        assert reply["error"] is None, reply
        return reply["result"]

    def control(self, name: str, **body: Any) -> Any:
        out = self.sh(
            "peer",
            f"curl -s -X POST -H 'Content-Type: application/json' --data-binary "
            f"{shlex.quote(json.dumps(body))} http://127.0.0.1:9332/{name}",
        )
        return json.loads(out)

    def wait_height(self, host: str, height: int) -> None:
        deadline = time.monotonic() + 120
        while self.rpc(host, "getblockcount") < height:
            assert time.monotonic() < deadline, f"{host} did not reach height {height}"
            time.sleep(1)


def test_restore_drill(scnode_lab_factory: Callable[..., LabHandle], tmp_path: Path) -> None:
    lab = scnode_lab_factory(("peer", "old", "new"))
    drill = Drill(lab, tmp_path)
    identity = pyrage.x25519.Identity.generate()
    key_file = tmp_path / "owner.agekey"
    key_file.write_text(str(identity) + "\n")
    recipients = json.dumps({"backup_timer_recipients": [str(identity.to_public())]})
    timer_host = f"drill_timer_host={drill.fqdn['new']}"
    fetched = tmp_path / "controller"

    # the network, the node to lose and a spare machine (with the nightly timer)
    all_hosts = ",".join(drill.fqdn.values())
    drill.playbook(drill.converge, all_hosts, "-e", recipients, "-e", timer_host)
    drill.control("mine", blocks=101)
    alice = drill.rpc("old", "getnewaddress", "member:alice", wallet="wallet")
    bob = drill.rpc("old", "getnewaddress", "member:bob", wallet="wallet")
    drill.control("pay", address=alice, sats=25_000_000)
    drill.control("pay", address=bob, sats=7_500_000)
    height = drill.control("mine", blocks=1)
    assert height["hashes"]
    tip = drill.rpc("peer", "getblockcount")
    drill.wait_height("old", tip)
    balances = drill.rpc("old", "getbalances", wallet="wallet")["mine"]
    assert balances["trusted"] == 0.325, balances

    # backup.yml, fetched to the controller
    drill.playbook(
        "playbooks/backup.yml",
        drill.fqdn["old"],
        "-e",
        recipients,
        "-e",
        f"backup_fetch_dir={fetched}",
    )
    next_address = drill.rpc("old", "getnewaddress", wallet="wallet")
    manifests = sorted((fetched / drill.fqdn["old"]).glob("*.manifest.json"))
    assert [m.name.split("-2")[0] for m in manifests] == ["chain-bitcoin-wallet"]
    manifest = json.loads(manifests[0].read_text())
    assert manifest["chain"]["height"] == tip

    # the old host is destroyed
    state = lab.lab.load()
    assert state is not None
    state.hosts["old"].stop(30)
    assert lab.ssh("old", "true", check=False, timeout=20).returncode != 0

    # the spare becomes the new node: restored over its fresh empty wallet (moved aside)
    drill.wait_height("new", tip)
    assert drill.rpc("new", "getbalances", wallet="wallet")["mine"]["trusted"] == 0
    drill.playbook(
        "playbooks/restore.yml",
        drill.fqdn["new"],
        "-e",
        f"backup_fetch_dir={fetched}",
        "-e",
        f"restore_from_host={drill.fqdn['old']}",
        "-e",
        f"restore_identity_file={key_file}",
        "-e",
        "restore_force=true",
    )
    assert drill.rpc("new", "getbalances", wallet="wallet")["mine"] == balances
    for address, label in ((alice, "member:alice"), (bob, "member:bob")):
        info = drill.rpc("new", "getaddressinfo", address, wallet="wallet")
        assert info["ismine"] is True and info["labels"] == [label]
    assert drill.rpc("new", "getnewaddress", wallet="wallet") == next_address
    assert drill.sh("new", "ls /var/lib/bitcoin/wallets").split().count("wallet") == 1
    assert "wallet.replaced-" in drill.sh("new", "ls /var/lib/bitcoin/wallets")
    assert drill.sh("new", "test -e /root/.scnode-restore.agekey && echo left || true") == ""

    # the nightly job on the new node: timer enabled, its service backs up by itself
    assert drill.sh("new", "systemctl is-enabled scnode-backup.timer").strip() == "enabled"
    assert drill.sh("new", "systemctl is-active scnode-backup.timer").strip() == "active"
    before = drill.sh("new", "ls /var/backups/scnode").split()
    drill.sh("new", "systemctl start scnode-backup.service")
    after = drill.sh("new", "ls /var/backups/scnode").split()
    made = sorted(set(after) - set(before))
    assert [name.rsplit(".", 2)[-2:] for name in made] == [["manifest", "json"], ["tar", "age"]]
    nightly = json.loads(drill.sh("new", f"cat /var/backups/scnode/{made[0]}"))
    assert nightly["chain"]["height"] == drill.rpc("new", "getblockcount")
    assert nightly["engine"] == "cli"  # Debian has no python3-pyrage: the age command

    # a channel change (lightningd rewrites emergency.recover) starts a backup by itself
    assert drill.sh("new", "systemctl is-active scnode-backup-lightning.path").strip() == "active"
    drill.sh(
        "new",
        "mkdir -p /var/lib/lightning/bitcoin && "
        "head -c 64 /dev/urandom > /var/lib/lightning/bitcoin/emergency.recover",
    )
    deadline = time.monotonic() + 180
    while True:
        # a manifest not there before (retention may drop the older ones of the same day)
        fresh = set(drill.sh("new", "ls /var/backups/scnode").split()) - set(after)
        if any(n.endswith(".manifest.json") for n in fresh):
            break
        assert time.monotonic() < deadline, "no backup after emergency.recover changed"
        time.sleep(2)
