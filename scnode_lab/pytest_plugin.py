"""Pytest fixtures for tests that need real test hosts (Debian trixie systemd containers).

- `scnode_lab_factory` (session): `make(hosts=("node-a", "node-b"))` starts a lab on a free
  10.10.N.0/24 (N from 100) and returns a `LabHandle`; every lab made is removed at session end.
- `scnode_lab` (session): one lab with two hosts, `node-a` and `node-b`.

A `LabHandle` has the lab's name, subnet, hosts (name → `LabHost` with `ip` and `fqdn`), the
inventory path and SSH key, `ssh(host, cmd)` (a command on the host, as root over SSH) and
`run_in(host, argv)` (a command of this machine run inside the host's network namespace, to
probe it from where it sits). Tests using them should be marked `@pytest.mark.testhosts`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from scnode_lab import network
from scnode_lab.inventory import host_fqdn
from scnode_lab.lab import Lab, LabSpec, SubnetInUseError, lab_spec, used_subnets
from scnode_lab.process import netns_exec
from scnode_lab.settings import LabPaths
from scnode_lab.ssh import ssh_argv

REQUIRED_TOOLS = ("systemd-nspawn", "slirp4netns", "debootstrap", "socat", "zstd", "nft", "ip")
# Labs made by tests take 10.10.100.0/24 and up; molecule scenarios use 10.10.1-99, the
# default lab 10.10.0.0/24.
FIRST_TEST_SUBNET = 100
LAST_TEST_SUBNET = 254


@dataclass(frozen=True)
class LabHost:
    name: str
    ip: str
    fqdn: str


@dataclass
class LabHandle:
    """A running lab, as tests see it."""

    lab: Lab
    spec: LabSpec

    @property
    def name(self) -> str:
        return self.lab.name

    @property
    def subnet(self) -> IPv4Network:
        return self.spec.subnet

    @property
    def hosts(self) -> dict[str, LabHost]:
        return {
            h.name: LabHost(h.name, str(h.ip), host_fqdn(h.name, self.name))
            for h in self.spec.hosts
        }

    @property
    def inventory(self) -> Path:
        return self.lab.inventory_path

    @property
    def key(self) -> Path:
        return self.lab.key

    @property
    def lab_netns(self) -> str:
        return network.lab_netns(self.name)

    def ssh(
        self, host: str, command: str | Sequence[str], *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` (a shell string, or an argv) as root on `host`; output captured."""
        argv = ssh_argv(self.name, self.key, self.hosts[host].ip, command)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)

    def run_in(
        self, host: str, argv: Sequence[str], *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a command of this machine inside `host`'s network namespace."""
        return subprocess.run(
            netns_exec(network.host_netns(self.name, host), argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def down(self) -> None:
        self.lab.down()


def missing_requirements() -> str | None:
    """Why test hosts cannot run here, or None."""
    if os.geteuid() != 0:
        return "test hosts need root (network namespaces, mounts, systemd-nspawn)"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"test hosts need {', '.join(missing)} (make deps installs them)"
    return None


def start_lab(
    hosts: Sequence[str], name: str, paths: LabPaths | None = None, timeout: float = 90
) -> LabHandle:
    """Start a lab with these host names on the first free test subnet."""
    paths = paths or LabPaths.from_env()
    for number in range(FIRST_TEST_SUBNET, LAST_TEST_SUBNET + 1):
        subnet = IPv4Network(f"10.10.{number}.0/24")
        if any(subnet.overlaps(used) for used in used_subnets(paths)):
            continue
        spec = lab_spec(name, subnet, list(hosts))
        lab = Lab(name, paths)
        try:
            lab.up(spec, timeout=timeout)
        except SubnetInUseError:
            continue  # another session claimed it between the look and the claim
        return LabHandle(lab=lab, spec=spec)
    raise RuntimeError("no free 10.10.N.0/24 for a test lab")


@pytest.fixture(scope="session")
def scnode_lab_factory() -> Iterator[Callable[..., LabHandle]]:
    """Make labs for this session; all are removed when it ends."""
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(reason)
    made: list[LabHandle] = []
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")

    def make(hosts: Sequence[str] = ("node-a", "node-b"), name: str | None = None) -> LabHandle:
        lab_name = name or f"pytest-{os.getpid()}-{worker}-{len(made)}"
        handle = start_lab(hosts, lab_name)
        made.append(handle)
        return handle

    yield make
    for handle in made:
        handle.down()


@pytest.fixture(scope="session")
def scnode_lab(scnode_lab_factory: Callable[..., LabHandle]) -> LabHandle:
    """A session's lab of two hosts, `node-a` and `node-b`."""
    return scnode_lab_factory(("node-a", "node-b"))
