"""playbooks/sweep_keys.yml on a real Debian 13 test host running the Bitcoin chain node as
site.yml installs it (chain_node role, simnet build from the lab's release mirror, mainnet
parameters as in the lab): the module runs on the node's own Python with the playbook's default
connection (the daemon's cookie on 127.0.0.1:8332), sweeps a mainnet paper key made at test time
into the wallet `wallet`, and refuses a testnet key."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from embit import ec, script
from embit.networks import NETWORKS

from scnode_lab import mirror
from scnode_lab.inventory import connection_vars
from scnode_lab.pytest_plugin import LabHandle, missing_requirements

pytestmark = [
    pytest.mark.testhosts,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
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
"""
# The playbook's default entry for Bitcoin (the AZCoin one is left out: not installed here).
BITCOIN_DEFAULT = {
    "chain": "bitcoin",
    "rpc_url": "http://127.0.0.1:8332",
    "rpc_cookie_file": "/var/lib/bitcoin/.cookie",
    "wallet": "wallet",
}


def ansible(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["PATH"] = f"{BIN}:{env['PATH']}"
    return subprocess.run(
        [str(BIN / "ansible-playbook"), *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


class Node:
    def __init__(self, lab: LabHandle, work: Path) -> None:
        self.lab = lab
        self.work = work
        self.fqdn = lab.hosts["node"].fqdn
        sums = json.loads((lab.lab.state_dir / mirror.MIRROR_FILE).read_text())
        release = {
            "download_base_url": sums["url"] + "/bin/bitcoin-core-{version}",
            "sha256sums_sha256": sums["sums"]["bin/bitcoin-core-30.2/SHA256SUMS"],
        }
        inventory = {
            "all": {
                "vars": {**connection_vars(lab.name, lab.key), "common_firewall_enabled": False},
                "children": {
                    "chain": {
                        "hosts": {
                            self.fqdn: {
                                "ansible_host": lab.hosts["node"].ip,
                                "chain_node_overrides": {"bitcoin": release},
                            }
                        }
                    }
                },
            }
        }
        self.inventory = work / "hosts.yml"
        self.inventory.write_text(yaml.safe_dump(inventory))

    def sh(self, command: str) -> str:
        return self.lab.ssh("node", command, timeout=180).stdout

    def rpc(self, method: str, *params: Any, wallet: str | None = None) -> Any:
        body = json.dumps({"jsonrpc": "1.0", "id": "t", "method": method, "params": params})
        path = f"/wallet/{wallet}" if wallet else "/"
        out = self.sh(
            'curl -s --user "$(cat /var/lib/bitcoin/.cookie)" --data-binary '
            f"{shlex.quote(body)} http://127.0.0.1:8332{path}"
        )
        reply = json.loads(out)
        assert reply["error"] is None, reply
        return reply["result"]

    def control(self, name: str, **body: Any) -> Any:
        out = self.sh(
            "curl -s -X POST -H 'Content-Type: application/json' --data-binary "
            f"{shlex.quote(json.dumps(body))} http://127.0.0.1:9332/{name}"
        )
        return json.loads(out)

    def sweep(self, keys: list[str], *extra: str) -> subprocess.CompletedProcess[str]:
        vars_file = self.work / f"keys-{secrets.token_hex(4)}.json"
        vars_file.write_text(
            json.dumps(
                {
                    "sweep_keys_wifs": " ".join(keys),  # as typed at the prompt
                    "sweep_keys_hosts": self.fqdn,
                    "sweep_keys_nodes": [BITCOIN_DEFAULT],
                    "sweep_keys_fee_rate": 3,
                }
            )
        )
        vars_file.chmod(0o600)
        return ansible(
            ["playbooks/sweep_keys.yml", "-i", str(self.inventory), "-e", f"@{vars_file}", *extra]
        )


def sats(amount: float) -> int:
    return round(amount * 100_000_000)


def test_sweep_on_a_test_host_chain_node(
    scnode_lab_factory: Callable[..., LabHandle], tmp_path: Path
) -> None:
    node = Node(scnode_lab_factory(("node",)), tmp_path)
    converge = tmp_path / "converge.yml"
    converge.write_text(CONVERGE)
    done = ansible([str(converge), "-i", str(node.inventory)])
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr
    assert node.rpc("getblockchaininfo")["chain"] == "main"

    paper = ec.PrivateKey(secrets.token_bytes(32))
    wif = paper.wif(NETWORKS["main"])
    address = script.p2wpkh(paper.get_public_key()).address(NETWORKS["main"])
    assert address.startswith("bc1")
    node.control("pay", address=address, sats=12_345_678)
    node.control("mine", blocks=1)
    before = sats(node.rpc("getbalances", wallet="wallet")["mine"]["trusted"])

    checked = node.sweep([wif], "--check")
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr
    assert "would sweep" in checked.stdout and wif not in checked.stdout

    swept = node.sweep([wif])
    assert swept.returncode == 0, swept.stdout[-3000:] + swept.stderr
    assert wif not in swept.stdout and wif not in swept.stderr
    line = next(x for x in swept.stdout.splitlines() if "bitcoin: swept" in x)
    amount = int(line.split("swept ")[1].split(" sat")[0])
    fee = int(line.split("(fee ")[1].split(" sat")[0])
    assert amount + fee == 12_345_678 and 0 < fee < 1_000
    node.control("mine", blocks=1)
    after = sats(node.rpc("getbalances", wallet="wallet")["mine"]["trusted"])
    assert after == before + amount

    testnet_key = ec.PrivateKey(secrets.token_bytes(32)).wif(NETWORKS["test"])
    refused = node.sweep([testnet_key])
    assert refused.returncode != 0
    assert "key #1 is a testnet/signet/regtest key (WIF prefix 0xef)" in refused.stdout
    assert testnet_key not in refused.stdout
