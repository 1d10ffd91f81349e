"""proxmox_host's network part converged for real on a test host of its own lab.

Two Debian trixie test hosts: `pve` (plays the Proxmox host; its uplink is eth0, Proxmox VE
itself is not installed: `proxmox_host_install: false`, no Proxmox repository is reachable
here — the repository part is tested in check mode in tests/roles/proxmox_host) and `peer`
(plays the outside world). A "guest" on the NAT bridge is a network namespace made by the test
and plugged into pve's vmbr1 with a veth. The test checks what a technician would:

- first run: vmbr1 up with its address, forwarding on, the masquerade and DNAT rules loaded,
  the rollback timer disarmed (confirmed); traffic from `peer` to pve's port reaches the guest
  (which sees peer's own address: DNAT), and the guest's connection out reaches `peer` from
  pve's address (masquerade);
- second run: changed=0;
- an uplink that does not exist is refused naming the variable, before a file changes;
- a change that is never confirmed (the confirm step skipped, as when the controller cannot
  reach the host again) is undone by the host itself when the timer fires.

Lab-only workarounds, made from this machine, not by the role: nspawn shows the container a
/sys of another network namespace and a read-only /proc/sys, so the test mounts a sysfs of
pve's own namespace over /sys/class/net (ifupdown2 needs it, as on a real host) and switches
IPv4 forwarding on from outside (the role's script writes it only when it is off).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scnode_lab import network
from scnode_lab.pytest_plugin import LabHandle, missing_requirements
from scnode_lab.ssh import ssh_argv

pytestmark = [
    pytest.mark.testhosts,
    # a lab of its own, 4-10 min: beyond CI's budget next to the converged node lab;
    # `make test-long` runs it
    pytest.mark.long_lab,
    pytest.mark.timeout(900),
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]

ROOT = Path(__file__).resolve().parents[2]
GUEST_IP = "10.77.0.11"
_RECAP = r"^{host}\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)"


def _init_pid(lab: LabHandle, host: str) -> int:
    state = json.loads((lab.lab.state_dir / "state.json").read_text())
    nspawn = int(state["hosts"][host]["pid"])
    children = Path(f"/proc/{nspawn}/task/{nspawn}/children").read_text().split()
    return int(children[0])


def _playbook(lab: LabHandle, work: Path, extra_vars: dict[str, object], *args: str) -> str:
    host = lab.hosts["pve"].fqdn
    play = work / "play.yml"
    play.write_text(
        f"- name: Proxmox host network\n  hosts: {host}\n  gather_facts: true\n"
        "  roles:\n    - role: satoshiware.scnode.proxmox_host\n"
    )
    (work / "vars.json").write_text(json.dumps(extra_vars))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / "collections")
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(lab.inventory)]
    run = subprocess.run(
        [*argv, str(play), "-e", f"@{work / 'vars.json'}", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    return run.stdout + run.stderr


def _recap(output: str, host: str) -> tuple[int, int]:
    match = re.search(_RECAP.format(host=re.escape(host)), output, re.M)
    assert match, output[-3000:]
    return int(match.group(1)), int(match.group(2))


@pytest.fixture(scope="module")
def pve_lab(scnode_lab_factory: Callable[..., LabHandle]) -> Iterator[LabHandle]:
    lab = scnode_lab_factory(("pve", "peer"))
    pve_ns = network.host_netns(lab.name, "pve")
    # the lab-only workarounds (module docstring)
    pid = _init_pid(lab, "pve")
    subprocess.run(
        [
            "nsenter", f"--target={pid}", "--mount", "--net", "sh", "-c",
            "mkdir -p /run/scnode-test-sysfs && mount -t sysfs sysfs /run/scnode-test-sysfs"
            " && mount --bind /run/scnode-test-sysfs/class/net /sys/class/net"
            " && mount --bind /run/scnode-test-sysfs/devices/virtual/net /sys/devices/virtual/net",
        ],
        check=True,
    )  # fmt: skip
    subprocess.run(
        ["ip", "netns", "exec", pve_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True
    )
    yield lab
    subprocess.run(["ip", "netns", "delete", f"{lab.name}-guest"], check=False)


def _guest(lab: LabHandle) -> str:
    """A namespace on pve's vmbr1 at GUEST_IP (made once vmbr1 exists)."""
    name = f"{lab.name}-guest"
    if Path(f"/run/netns/{name}").exists():
        return name
    pve_ns = network.host_netns(lab.name, "pve")
    host_if = f"g{os.getpid() % 100000}"
    steps = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", name],
        ["ip", "link", "set", host_if, "netns", pve_ns],
        ["ip", "-n", pve_ns, "link", "set", host_if, "master", "vmbr1", "up"],
        ["ip", "-n", name, "addr", "add", f"{GUEST_IP}/24", "dev", "eth0"],
        ["ip", "-n", name, "link", "set", "eth0", "up"],
        ["ip", "-n", name, "link", "set", "lo", "up"],
        ["ip", "-n", name, "route", "add", "default", "via", "10.77.0.1"],
    ]
    for step in steps:
        subprocess.run(step, check=True)
    return name


def test_nat_bridge_forwards_masquerades_is_idempotent_and_rolls_back(
    pve_lab: LabHandle, tmp_path: Path
) -> None:
    lab = pve_lab
    pve, peer = lab.hosts["pve"], lab.hosts["peer"]
    base: dict[str, object] = {
        "proxmox_host_install": False,
        "proxmox_host_uplink_bridge": "eth0",
        "proxmox_host_network_rollback_seconds": 120,
        "proxmox_host_port_forwards": [
            {"proto": "tcp", "port": 19333, "to": GUEST_IP, "comment": "AZCoin P2P"},
        ],
    }
    started = time.monotonic()
    first = _playbook(lab, tmp_path, base)
    changed, failed = _recap(first, pve.fqdn)
    assert failed == 0 and changed > 0, first[-4000:]
    first_seconds = time.monotonic() - started

    addr = lab.ssh("pve", "ip -4 -o addr show dev vmbr1").stdout
    assert " 10.77.0.1/24 " in addr
    rules = lab.ssh("pve", "iptables -t nat -S").stdout
    assert "-A SCNODE-POSTROUTING -s 10.77.0.0/24 -o eth0 -j MASQUERADE" in rules
    assert (
        f'--dport 19333 -m comment --comment "AZCoin P2P" -j DNAT --to-destination {GUEST_IP}:19333'
        in rules
    )
    assert lab.ssh("pve", "cat /proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    assert (
        "net.ipv4.ip_forward = 1" in lab.ssh("pve", "cat /etc/sysctl.d/90-scnode-nat.conf").stdout
    )
    timer = lab.ssh("pve", "systemctl is-active scnode-network-rollback.timer", check=False)
    assert timer.stdout.strip() != "active", "the change was not confirmed"

    # Traffic: peer -> pve:19333 reaches the guest, which sees peer's own address (DNAT only).
    guest = _guest(lab)
    server = subprocess.Popen(
        ["ip", "netns", "exec", guest, "socat", "TCP-LISTEN:19333,reuseaddr,fork",
         "SYSTEM:echo guest saw $SOCAT_PEERADDR"],
    )  # fmt: skip
    try:
        time.sleep(0.5)
        seen = lab.ssh("peer", f"nc -w 5 {pve.ip} 19333 < /dev/null").stdout
        assert seen.strip() == f"guest saw {peer.ip}"
        # The guest's own connection out leaves from pve's address (masquerade).
        listener = subprocess.Popen(
            lab_ssh_argv(lab, "peer", "timeout 30 socat TCP-LISTEN:4444,reuseaddr "
                         "'SYSTEM:echo peer saw $SOCAT_PEERADDR'"),
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.5)
        out = subprocess.run(
            ["ip", "netns", "exec", guest, "socat", "-T", "5", "-", f"TCP:{peer.ip}:4444"],
            input="", capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        listener.wait(timeout=40)
        assert out.stdout.strip() == f"peer saw {pve.ip}"
    finally:
        server.terminate()
        server.wait(timeout=10)

    # Second run: nothing to do.
    started = time.monotonic()
    second = _playbook(lab, tmp_path, base)
    second_seconds = time.monotonic() - started
    assert _recap(second, pve.fqdn) == (0, 0), second[-4000:]

    # An uplink that is not there: refused by name, before any file changes.
    before = lab.ssh(
        "pve", "md5sum /etc/network/interfaces.d/scnode-nat /usr/local/sbin/scnode-nat"
    ).stdout
    wrong = _playbook(
        lab, tmp_path, {**base, "proxmox_host_uplink_bridge": "vmbr0"}, "--tags", "network"
    )
    assert _recap(wrong, pve.fqdn)[1] == 1
    assert "proxmox_host_uplink_bridge = 'vmbr0' must be an interface of this host" in " ".join(
        wrong.split()
    )
    after = lab.ssh(
        "pve", "md5sum /etc/network/interfaces.d/scnode-nat /usr/local/sbin/scnode-nat"
    ).stdout
    assert after == before

    # A change never confirmed: the host puts the previous configuration back by itself.
    rollbacks = "/var/lib/scnode/proxmox-network/rollbacks.log"
    count = len(lab.ssh("pve", f"cat {rollbacks} 2>/dev/null || true").stdout.splitlines())
    changed_forwards = {
        **base,
        "proxmox_host_network_rollback_seconds": 30,
        "proxmox_host_port_forwards": [
            *base["proxmox_host_port_forwards"],  # type: ignore[misc]
            {"proto": "tcp", "port": 3336, "to": GUEST_IP, "comment": "AZC miners"},
        ],
    }
    unconfirmed = _playbook(lab, tmp_path, changed_forwards, "--skip-tags", "network_confirm")
    assert _recap(unconfirmed, pve.fqdn)[1] == 0, unconfirmed[-4000:]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        lines = lab.ssh("pve", f"cat {rollbacks} 2>/dev/null || true").stdout.splitlines()
        if len(lines) > count:
            break
        time.sleep(3)
    else:
        pytest.fail("the unconfirmed change was not rolled back")
    rules = lab.ssh("pve", "iptables -t nat -S").stdout
    assert "--dport 3336" not in rules, rules
    assert "--dport 19333" in rules, rules
    assert "3336" not in lab.ssh("pve", "cat /usr/local/sbin/scnode-nat").stdout
    assert lab.ssh("pve", "/usr/local/sbin/scnode-nat check", check=False).returncode == 0
    print(f"first run {first_seconds:.0f} s, second run {second_seconds:.0f} s")


def lab_ssh_argv(lab: LabHandle, host: str, command: str) -> list[str]:
    return ssh_argv(lab.name, lab.key, lab.hosts[host].ip, command)
