"""Real test hosts: a 2-host lab created and destroyed three times, leaving nothing behind."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from scnode_lab import container, image, network
from scnode_lab.lab import Lab, LabState, SubnetInUseError, lab_spec
from scnode_lab.process import LabError, TrackedProcess
from scnode_lab.pytest_plugin import LabHandle, missing_requirements, start_lab
from scnode_lab.settings import LabPaths

pytestmark = [
    pytest.mark.testhosts,
    # The first lab of a fresh machine builds the image once (100-215 s) inside its test.
    pytest.mark.timeout(900),
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]


def _live_processes_mentioning(text: str) -> list[str]:
    """Command lines of live (non-zombie) processes that mention `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and str(os.getpid()) != proc.name:
            found.append(cmdline)
    return found


def _assert_nothing_left(lab: Lab, state: LabState) -> None:
    prefix = network.lab_netns(lab.name)
    left_ns = [ns for ns in network.list_netns() if ns == prefix or ns.startswith(prefix + ".")]
    assert left_ns == []
    assert not Path("/run/netns", prefix).exists()
    assert [p for p in state.hosts.values() if p.alive()] == []
    assert state.uplink is not None and not state.uplink.alive()
    mounts = Path("/proc/mounts").read_text()
    assert str(lab.layers) not in mounts
    assert container.mounts_under(lab.layers) == []  # other labs may run on this machine
    # nspawn runs with `-M <lab>-<host>`, slirp4netns with the lab namespace's path.
    assert _live_processes_mentioning(f"/run/netns/{prefix}") == []
    assert _live_processes_mentioning(f"-M {lab.name.replace('_', '-')}-") == []
    assert not lab.layers.exists()
    assert not lab.state_dir.exists()
    for host in state.spec.hosts:
        assert [d for d in container.cgroup_dirs(lab.name, host.name) if d.exists()] == []


def _host_namespace_has_no_lab_address() -> None:
    shown = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True)
    for line in shown.stdout.splitlines():
        address = ipaddress.IPv4Interface(line.split()[3])
        assert address not in ipaddress.IPv4Network("10.10.0.0/16"), line


def test_create_and_destroy_three_times_leaves_nothing() -> None:
    name = f"pytest_cycle-{os.getpid()}"  # '_' as in molecule scenario names
    for _ in range(3):
        lab = start_lab(("host-a", "host-b"), name)
        state = lab.lab.load()
        assert state is not None and state.healthy()
        a, b = lab.hosts["host-a"], lab.hosts["host-b"]

        # SSH with the generated key, to both hosts; each knows who it is.
        assert lab.ssh("host-a", "hostname").stdout.strip() == "host-a"
        assert lab.ssh("host-b", "hostname -f").stdout.strip() == b.fqdn
        # A reaches B over the lab bridge: ICMP and B's SSH port.
        lab.ssh("host-a", f"ping -c1 -W2 {b.ip}")
        lab.ssh("host-a", f"nc -z -w2 {b.ip} 22")
        lab.ssh("host-b", f"ping -c1 -W2 {a.fqdn}")
        # The private addresses live only inside the lab's namespaces.
        _host_namespace_has_no_lab_address()

        lab.down()
        _assert_nothing_left(lab.lab, state)


def test_a_running_lab_refuses_another_shape_and_its_subnet(
    scnode_lab: LabHandle,
) -> None:
    paths = LabPaths.from_env()
    with pytest.raises(LabError, match="another shape"):
        Lab(scnode_lab.name, paths).up(lab_spec(scnode_lab.name, scnode_lab.subnet, "x"))
    other = f"pytest-clash-{os.getpid()}"
    with pytest.raises(SubnetInUseError):
        Lab(other, paths).up(lab_spec(other, scnode_lab.subnet, "x"))
    assert not Lab(other, paths).state_dir.exists()
    assert network.lab_netns(other) not in network.list_netns()


def test_hosts_boot_systemd_and_reach_the_package_mirror_through_the_nat(
    scnode_lab: LabHandle,
) -> None:
    state = scnode_lab.ssh("node-a", "systemctl is-system-running --wait", check=False)
    assert state.stdout.strip() in ("running", "degraded")
    failed = scnode_lab.ssh("node-a", "systemctl --failed --no-legend --plain").stdout
    assert failed.strip() == ""
    # Downloads leave through slirp4netns' user-mode NAT (DNS included): apt works, and HTTPS
    # to PyPI, with the machine's local CAs trusted by the host.
    scnode_lab.ssh("node-b", "apt-get -q update", timeout=180)
    scnode_lab.ssh("node-b", "curl -fsS -o /dev/null https://pypi.org/simple/pip/", timeout=60)


def test_lab_egress_is_refused_inside_the_lab_namespace(scnode_lab: LabHandle) -> None:
    # A private address and a port other than HTTP(S): the lab namespace's nftables rejects
    # both at once, so nothing of this leaves the machine.
    for probe in ("nc -z -w5 192.168.255.1 80", "nc -z -w5 pypi.org 22"):
        started = time.monotonic()
        refused = scnode_lab.ssh("node-a", probe, check=False)
        assert refused.returncode != 0, probe
        assert time.monotonic() - started < 4, f"{probe} timed out instead of being refused"
    # The lab itself stays open: host to host on any port.
    scnode_lab.ssh("node-a", f"nc -z -w2 {scnode_lab.hosts['node-b'].ip} 22")


def test_each_host_has_its_own_cgroup(scnode_lab: LabHandle) -> None:
    # Containers sharing one cgroup tree remove each other's unit cgroups: a `systemctl
    # reload` in one then fails with "Failed to spawn executor" (seen before this was fixed).
    state = scnode_lab.lab.load()
    assert state is not None
    cgroups = {
        name: Path(f"/proc/{proc.pid}/cgroup").read_text().splitlines()[-1]
        for name, proc in state.hosts.items()
    }
    assert cgroups["node-a"] != cgroups["node-b"]
    assert all(f"/scnode-lab/{scnode_lab.name}/" in line for line in cgroups.values())


def test_run_in_probes_a_host_from_its_own_namespace(scnode_lab: LabHandle) -> None:
    shown = scnode_lab.run_in("node-a", ["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
    assert f"{scnode_lab.hosts['node-a'].ip}/24" in shown.stdout
    mac = scnode_lab.run_in("node-a", ["cat", "/sys/class/net/eth0/address"]).stdout.strip()
    assert mac == network.mac_for(ipaddress.IPv4Address(scnode_lab.hosts["node-a"].ip))


def test_ansible_reaches_every_host_with_the_written_inventory(scnode_lab: LabHandle) -> None:
    ansible = Path(sys.executable).parent / "ansible"
    result = subprocess.run(
        [str(ansible), "-i", str(scnode_lab.inventory), "all", "-m", "ansible.builtin.ping"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 2


def test_cached_image_is_not_rebuilt() -> None:
    paths = LabPaths.from_env()
    built = image.ensure_image(paths, log=False)
    stamp = built.tarball.stat().st_mtime_ns
    assert image.ensure_image(paths, log=False) == built
    assert built.tarball.stat().st_mtime_ns == stamp


def test_tracked_process_ignores_a_recycled_pid() -> None:
    me = TrackedProcess.of(os.getpid())
    assert me.alive()
    assert not TrackedProcess(pid=me.pid, start_ticks=me.start_ticks + 1).alive()


def test_up_is_idempotent_heals_a_dead_container_and_down_twice_is_harmless(
    scnode_lab_factory: Callable[..., LabHandle], scnode_lab: LabHandle
) -> None:
    lab = scnode_lab_factory(("solo",))
    first = lab.lab.load()
    assert first is not None
    # Labs side by side are isolated: another lab's hosts are not reachable from this one.
    other = scnode_lab.hosts["node-a"].ip
    assert lab.ssh("solo", f"nc -z -w3 {other} 22", check=False).returncode != 0
    assert scnode_lab.ssh("node-a", f"nc -z -w2 {scnode_lab.hosts['node-b'].ip} 22").returncode == 0
    again = lab.lab.up(lab.spec)
    assert again.hosts == first.hosts  # the same nspawn processes, not new ones
    assert again.uplink == first.uplink

    # The container dies under the lab (as after an OOM kill or a reboot): `up` remakes it.
    victim = first.hosts["solo"]
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait_gone(10)
    assert not first.healthy()
    healed = lab.lab.up(lab.spec)
    assert healed.healthy()
    assert healed.hosts["solo"] != victim
    assert lab.ssh("solo", "systemctl is-system-running").stdout.strip() == "running"
    assert first.uplink is not None and not first.uplink.alive()  # all of it was remade

    lab.down()
    assert lab.lab.down() is False
    assert healed.uplink is not None and not healed.uplink.alive()


def test_a_failed_up_leaves_nothing_behind() -> None:
    name = f"pytest-fail-{os.getpid()}"
    lab = Lab(name)
    spec = lab_spec(name, "10.10.250.0/24", "doomed")
    # No SSH can answer within a millisecond: `up` fails after booting the container.
    with pytest.raises(LabError, match="not ready"):
        lab.up(spec, timeout=0.001)
    assert lab.load() is None
    prefix = network.lab_netns(name)
    assert [ns for ns in network.list_netns() if ns.startswith(prefix)] == []
    assert container.mounts_under(lab.layers) == []
    assert _live_processes_mentioning(f"-M {name}-") == []
    assert _live_processes_mentioning(f"/run/netns/{prefix}") == []
    assert not lab.layers.exists()
    assert [d for d in container.cgroup_dirs(name, "doomed") if d.exists()] == []
