"""site.yml's WireGuard and backup plays in the converged default lab.

WireGuard: the apps host (the node's front) has the tunnel `wg-client` to the simulated SC
Cluster's hub on cluster.lab (both ends wireguard-go: no kernel module on test machines). The
hub's key and the node's preshared key were made on cluster.lab, the node's key on the node;
the run printed what the Cluster registers (the node's public key, DMI serial, product UUID)
and no private or preshared key. Across the tunnel the hub reaches the node and the node the
hub; the other node hosts have no tunnel.

Backups: every node host has the nightly timer; started by hand, its job backs up what the host
holds (the chain wallets, Core Lightning, the exchange database), encrypted to the lab's SSH key
(inventories/lab/group_vars/scnode.yml): the controller decrypts each one and finds what the
manifest lists.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
import time
from typing import Any

import pyrage  # type: ignore[import-untyped]
import pytest

from scnode_lab.pytest_plugin import ConvergedLab

pytestmark = [
    pytest.mark.testhosts,
    pytest.mark.xdist_group("default-lab"),
    pytest.mark.timeout(2700),
]

NODE_HOSTS = ("chain", "lightning", "mining", "apps")
HUB_IP = "10.66.0.1"
NODE_TUNNEL_IP = "10.66.0.14"  # inventories/lab/group_vars/apps.yml
BACKUP_DIR = "/var/backups/scnode"


def test_the_node_tunnels_to_the_cluster_hub_and_no_key_is_printed(
    converged_lab: ConvergedLab,
) -> None:
    lab = converged_lab
    ping = lab.ssh("apps", f"ping -c 3 -W 2 {HUB_IP}", check=False, timeout=60)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    back = lab.ssh("cluster", f"ping -c 2 -W 2 {NODE_TUNNEL_IP}", check=False, timeout=60)
    assert back.returncode == 0, back.stdout + back.stderr
    # the SC Cluster can manage the node through the tunnel (its SSH, as the fleet update does)
    ssh_port = lab.ssh(
        "cluster", f"timeout 5 bash -c 'exec 3<>/dev/tcp/{NODE_TUNNEL_IP}/22 && head -c 4 <&3'"
    )
    assert ssh_port.stdout == "SSH-"
    handshake = lab.on("apps", "wg show wg-client latest-handshakes").split()
    assert int(handshake[1]) > time.time() - 300, handshake

    node_pub = lab.on("apps", "wg pubkey < /etc/wireguard/wg-client.key").strip()
    hub_pub = lab.on("cluster", "wg pubkey < /etc/wireguard/wg-hub.key").strip()
    peer = lab.on("apps", "wg show wg-client dump").splitlines()[1].split("\t")
    assert peer[0] == hub_pub and peer[3] == f"{HUB_IP}/32" and peer[7] == "25", peer
    secrets = [
        lab.on("apps", "cat /etc/wireguard/wg-client.key").strip(),
        lab.on("apps", "cat /etc/wireguard/wg-client.psk").strip(),
        lab.on("cluster", "cat /etc/wireguard/wg-hub.key").strip(),
    ]
    conf = lab.on("apps", "cat /etc/wireguard/wg-client.conf")
    assert "PrivateKey" not in conf and not any(s in conf for s in secrets)
    # what the run printed for the Cluster (the second converge; the first may be a reuse)
    output = lab.second_converge.stdout + lab.first_converge.stdout
    assert re.search(rf"wireguard_public_key\W+{re.escape(node_pub)}", output), output[-3000:]
    assert re.search(r"dmi_serial\W+\S", output) and re.search(r"product_uuid\W+\S", output)
    for secret in secrets:
        assert secret not in output
    # only the front host tunnels: the other node hosts have no WireGuard at all
    for host in ("chain", "lightning", "mining"):
        out = lab.on(
            host, "ls /etc/wireguard 2>/dev/null; ip -o link show wg-client 2>/dev/null; true"
        )
        assert out.strip() == "", (host, out)


def _newest_backups(lab: ConvergedLab, host: str) -> dict[str, dict[str, Any]]:
    """The newest manifest per subject in the host's backup directory."""
    listing = lab.on(host, f"ls -1 {BACKUP_DIR}/*.manifest.json 2>/dev/null || true").split()
    newest: dict[str, dict[str, Any]] = {}
    for path in sorted(listing):  # UTC stamps sort in time order
        manifest = json.loads(lab.on(host, f"cat {path}"))
        newest[str(manifest["subject"])] = manifest
    return newest


def test_every_host_backs_up_what_it_holds_encrypted_to_the_owner(
    converged_lab: ConvergedLab,
) -> None:
    lab = converged_lab
    for host in NODE_HOSTS:
        state = lab.on(
            host,
            "systemctl is-enabled scnode-backup.timer; systemctl is-active scnode-backup.timer",
        )
        assert state.split() == ["enabled", "active"], (host, state)
        assert lab.on(host, f"stat -c '%a %U' {BACKUP_DIR}").split() == ["700", "root"]
    before = {host: _newest_backups(lab, host) for host in ("chain", "lightning", "apps")}
    started = time.monotonic()
    for host in ("chain", "lightning", "apps"):
        lab.on(host, "systemctl start --no-block scnode-backup.service")
    for host in ("chain", "lightning", "apps"):
        done = lab.ssh(
            host,
            "while systemctl is-active -q scnode-backup.service"
            ' || [ "$(systemctl show -P ActiveState scnode-backup.service)" = activating ];'
            " do sleep 2; done; systemctl show -P Result scnode-backup.service",
            timeout=600,
        )
        assert done.stdout.strip() == "success", (
            host,
            lab.on(host, "journalctl -u scnode-backup.service -n 40 --no-pager"),
        )
    seconds = time.monotonic() - started

    identity = pyrage.ssh.Identity.from_buffer(lab.lab.key.read_bytes())
    expected = {
        "chain": {"bitcoin-wallet", "azcoin-wallet"},
        "lightning": {"lightningd"},
        "apps": {"exchange"},
    }
    for host, subjects in expected.items():
        after = _newest_backups(lab, host)
        made = {s for s, m in after.items() if m != before[host].get(s)}
        assert made == subjects, (host, sorted(after))
        for subject in made:
            manifest = after[subject]
            encrypted = base64.b64decode(
                lab.on(host, f"base64 -w0 {BACKUP_DIR}/{manifest['file']}")
            )
            assert hashlib.sha256(encrypted).hexdigest() == manifest["sha256"]
            assert b"SQLite format 3" not in encrypted  # nothing in clear
            with tarfile.open(fileobj=io.BytesIO(pyrage.decrypt(encrypted, [identity]))) as tar:
                for entry in manifest["files"]:
                    member = tar.extractfile(entry["name"])
                    assert member is not None, (subject, entry["name"])
                    assert hashlib.sha256(member.read()).hexdigest() == entry["sha256"]
    print(f"backups of chain, lightning and apps hosts: {seconds:.0f} s")
