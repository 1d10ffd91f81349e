"""The wireguard role converged for real on a test host of its own lab.

Two Debian trixie test hosts: `node` (runs the role) and `hub` (plays the SC Cluster hub; the
test configures it by hand with wg-quick). The host kernel here has no WireGuard module, so
both ends run wireguard-go (wg-quick falls back to it), as a node without the module would.
The test checks what a technician would: the tunnel comes up and the hub answers a ping through
it, neither key is in the configuration file or in the playbook's output, the node's public key
is reported, and a second run changes nothing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from scnode_lab.pytest_plugin import LabHandle, missing_requirements

pytestmark = [
    pytest.mark.testhosts,
    # a lab of its own, 4-10 min: beyond CI's budget next to the converged node lab;
    # `make test-long` runs it
    pytest.mark.long_lab,
    pytest.mark.timeout(600),
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]

ROOT = Path(__file__).resolve().parents[2]
_RECAP = r"^{host}\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)"


def _playbook(lab: LabHandle, work: Path, extra_vars: dict[str, object]) -> str:
    host = lab.hosts["node"].fqdn
    play = work / "play.yml"
    play.write_text(
        f"- name: Tunnel to the SC Cluster\n  hosts: {host}\n  gather_facts: true\n"
        "  roles:\n    - role: satoshiware.scnode.wireguard\n"
    )
    (work / "vars.json").write_text(json.dumps(extra_vars))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / "collections")
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(lab.inventory)]
    run = subprocess.run(
        [*argv, str(play), "-e", f"@{work / 'vars.json'}", "-v"],
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
        check=False,
    )
    return run.stdout + run.stderr


def _recap(output: str, host: str) -> tuple[int, int]:
    match = re.search(_RECAP.format(host=re.escape(host)), output, re.M)
    assert match, output[-3000:]
    return int(match.group(1)), int(match.group(2))


def test_tunnel_to_the_hub_comes_up_keeps_keys_private_and_is_idempotent(
    scnode_lab_factory: Callable[..., LabHandle], tmp_path: Path
) -> None:
    lab = scnode_lab_factory(("node", "hub"))
    node, hub = lab.hosts["node"], lab.hosts["hub"]
    psk = base64.b64encode(secrets.token_bytes(32)).decode()
    hub_pub = lab.ssh(
        "hub", "umask 077; wg genkey > /etc/wireguard/hub.key; wg pubkey < /etc/wireguard/hub.key"
    ).stdout.strip()
    variables: dict[str, object] = {
        "wireguard_address": "10.66.0.17/32",
        "wireguard_hub_public_key": hub_pub,
        "wireguard_hub_endpoint": f"{hub.ip}:51820",
        "wireguard_hub_allowed_ips": ["10.66.0.1/32"],
        "wireguard_preshared_key": psk,
        "wireguard_packages": ["wireguard-tools", "wireguard-go"],
    }

    started = time.monotonic()
    first = _playbook(lab, tmp_path, variables)
    first_seconds = time.monotonic() - started
    changed, failed = _recap(first, node.fqdn)
    assert failed == 0 and changed > 0, first[-4000:]

    private = lab.ssh("node", "cat /etc/wireguard/wg-client.key").stdout.strip()
    node_pub = lab.ssh("node", "wg pubkey < /etc/wireguard/wg-client.key").stdout.strip()
    assert private and private not in first and psk not in first
    assert re.search(rf"wireguard_public_key\W+{re.escape(node_pub)}", first), first[-3000:]
    assert lab.ssh("node", "stat -c %a /etc/wireguard/wg-client.key").stdout.strip() == "600"
    conf = lab.ssh("node", "cat /etc/wireguard/wg-client.conf").stdout
    assert private not in conf and psk not in conf and "PrivateKey" not in conf
    assert "PersistentKeepalive = 25" in conf and "AllowedIPs = 10.66.0.1/32" in conf
    dump = lab.ssh("node", "wg show wg-client dump").stdout.splitlines()
    assert dump[0].split("\t")[0] == private  # loaded by PostUp
    peer = dump[1].split("\t")
    assert peer[:2] == [hub_pub, psk] and peer[3] == "10.66.0.1/32" and peer[7] == "25"

    # The hub, configured by hand: the node is its peer.
    hub_conf = (
        "[Interface]\nAddress = 10.66.0.1/24\nListenPort = 51820\n"
        "PostUp = wg set %i private-key /etc/wireguard/hub.key\n"
        f"[Peer]\nPublicKey = {node_pub}\nPresharedKey = {psk}\nAllowedIPs = 10.66.0.17/32\n"
    )
    lab.ssh("hub", f"umask 077; cat > /etc/wireguard/wg-hub.conf <<'EOF'\n{hub_conf}EOF")
    up = lab.ssh("hub", "wg-quick up wg-hub", check=False)
    assert up.returncode == 0, up.stdout + up.stderr
    ping = lab.ssh("node", "ping -c 3 -W 2 10.66.0.1", check=False, timeout=60)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    handshake = lab.ssh("node", "wg show wg-client latest-handshakes").stdout.split()
    assert int(handshake[1]) > 0

    started = time.monotonic()
    second = _playbook(lab, tmp_path, variables)
    second_seconds = time.monotonic() - started
    assert _recap(second, node.fqdn) == (0, 0), second[-4000:]
    assert lab.ssh("node", "cat /etc/wireguard/wg-client.key").stdout.strip() == private
    print(f"wireguard converge: first {first_seconds:.1f} s, second {second_seconds:.1f} s")

    # A default route through the hub is refused before anything changes.
    refused = _playbook(lab, tmp_path, {**variables, "wireguard_hub_allowed_ips": ["0.0.0.0/0"]})
    assert _recap(refused, node.fqdn)[1] == 1 and "no default route" in refused
