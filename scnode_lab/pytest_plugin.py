"""Pytest fixtures for tests that need real test hosts (Debian trixie systemd containers).

- `scnode_lab_factory` (session): `make(hosts=("node-a", "node-b"))` starts a lab on a free
  10.10.N.0/24 (N from 100) and returns a `LabHandle`; every lab made is removed at session end.
- `scnode_lab` (session): one lab with two hosts, `node-a` and `node-b`.
- `converged_lab` (session): the default lab (`lab`, 10.10.0.0/24) as `make lab` leaves it —
  brought up (or reused when up), `playbooks/site.yml` converged with make's command line and
  inventory, the demo seeded (`scnode_lab.demo`), and a second converge (`-vvv`, its output kept
  in `second_converge_log`) that must report changed=0 on every host. A `ConvergedLab`; removed
  at session end only when this session brought it up (and SCNODE_LAB_KEEP is not 1). Sessions
  take turns on it (a lock). Its set-up counts against the first test's timeout.

A `LabHandle` has the lab's name, subnet, hosts (name → `LabHost` with `ip` and `fqdn`), the
inventory path and SSH key, `ssh(host, cmd)` (a command on the host, as root over SSH) and
`run_in(host, argv)` (a command of this machine run inside the host's network namespace, to
probe it from where it sits). Tests using them should be marked `@pytest.mark.testhosts`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from scnode_lab import network
from scnode_lab import playbook as playbooks
from scnode_lab.demo import Demo, DemoFacts
from scnode_lab.inventory import host_fqdn
from scnode_lab.lab import (
    DEFAULT_NAME,
    DEFAULT_SUBNET,
    Lab,
    LabSpec,
    SubnetInUseError,
    lab_spec,
    used_subnets,
)
from scnode_lab.playbook import PlaybookRun
from scnode_lab.process import netns_exec
from scnode_lab.remote import Remote
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


# ------------------------------------------------------------------------- the converged lab
@dataclass
class ConvergedLab:
    """The default lab after `make lab`: site.yml converged twice (the second changed nothing)
    and the demo seeded. Hosts are named as lab hosts (`mining`) or inventory names
    (`mining.lab`)."""

    lab: Lab
    inventory: Path  # the committed inventories/lab/hosts.yml (ansible.cfg's default)
    apps_source: Path  # the committed apps/ every converge of this session deploys
    demo: DemoFacts
    first_converge: PlaybookRun
    second_converge: PlaybookRun
    second_converge_log: Path  # the second (idempotence) run's full -vvv output
    brought_up: bool  # this session started the lab (and removes it at its end)

    @property
    def name(self) -> str:
        return self.lab.name

    @property
    def remote(self) -> Remote:
        return Remote(self.lab)

    @property
    def hosts(self) -> dict[str, LabHost]:
        state = self.lab.load()
        assert state is not None, "the converged lab is gone"
        return {
            h.name: LabHost(h.name, str(h.ip), host_fqdn(h.name, self.name))
            for h in state.spec.hosts
        }

    def playbook(
        self, *args: str, playbook: str = playbooks.SITE, timeout: float = 1800
    ) -> PlaybookRun:
        """`ansible-playbook <playbook> *args` as `make lab` runs it, deploying this session's
        apps snapshot unless `args` name another `scnode_apps_source_dir`."""
        extra = list(args)
        if not any("scnode_apps_source_dir=" in a for a in extra):
            extra += ["-e", f"scnode_apps_source_dir={self.apps_source}"]
        return playbooks.run(*extra, playbook=playbook, timeout=timeout)

    def ssh(
        self, host: str, command: str | Sequence[str], *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` as root on `host` (output captured); raises on failure with `check`."""
        return self.remote.ssh(host, command, check=check, timeout=timeout)

    def on(self, host: str, command: str | Sequence[str], timeout: float = 120) -> str:
        """stdout of `command` run as root on `host` (raises when it fails)."""
        return self.remote.on(host, command, timeout=timeout)

    def http(
        self,
        host: str,
        url: str,
        key: str | None = None,
        method: str = "GET",
        body: Any = None,
        timeout: float = 20,
    ) -> tuple[int, Any]:
        """curl on `host` (the APIs listen on its loopback): (status, parsed JSON or text)."""
        return self.remote.http(host, url, key, method, body, timeout)

    def token(self, host: str, name: str) -> str:
        """An operator key the roles keep in /etc/scnode/keys/<name>.token on `host`."""
        return self.remote.token(host, name)

    def run_in(
        self, host: str, argv: Sequence[str], *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a command of this machine inside `host`'s network namespace."""
        return subprocess.run(
            netns_exec(network.host_netns(self.name, Remote.host_name(host)), argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )


@contextlib.contextmanager
def _default_lab_turn(paths: LabPaths) -> Iterator[None]:
    """One test session at a time converges and uses the default lab."""
    locks = paths.state_root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / "default-lab-session.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                "converged_lab: another test session holds the default lab; waiting",
                file=sys.stderr,
            )
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _converge(run: int, log: Path, apps: Path, *extra: str) -> PlaybookRun:
    result = playbooks.run(*extra, "-e", f"scnode_apps_source_dir={apps}", log=log)
    expected = set(playbooks_hosts())
    if not result.ok or set(result.recap) != expected:
        pytest.fail(
            f"site.yml run {run} failed (exit {result.returncode}, recap {result.changed}, "
            f"full output {log}):\n{result.tail()}",
            pytrace=False,
        )
    print(f"converged_lab: site.yml run {run}: {result.seconds:.0f} s, changed {result.changed}")
    return result


def playbooks_hosts() -> list[str]:
    """The default lab's inventory names: every host site.yml converges."""
    return [host_fqdn(h.name, DEFAULT_NAME) for h in lab_spec(DEFAULT_NAME).hosts]


@pytest.fixture(scope="session")
def converged_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConvergedLab]:
    """The default lab as `make lab` leaves it (see the module docstring)."""
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(reason)
    paths = LabPaths.from_env()
    workdir = tmp_path_factory.mktemp("converged-lab")
    with _default_lab_turn(paths):
        lab = Lab(DEFAULT_NAME, paths)
        brought_up = lab.load() is None
        try:
            started = time.monotonic()
            lab.up(lab_spec(DEFAULT_NAME, DEFAULT_SUBNET, None))
            apps = playbooks.snapshot_apps(workdir / "apps-snapshot")
            if os.environ.get("SCNODE_LAB_REUSE_CONVERGED") == "1" and not brought_up:
                # developers only (CI never sets it): the running lab was converged by hand with
                # make's command line; the idempotence run below still checks it
                first = PlaybookRun(argv=[], returncode=0, stdout="", stderr="", seconds=0.0)
            else:
                first = _converge(1, workdir / "site-1.log", apps)
            seeding = time.monotonic()
            demo = Demo(lab).seed()
            print(f"converged_lab: demo seeded in {time.monotonic() - seeding:.0f} s")
            second_log = workdir / "site-2-vvv.log"
            second = _converge(2, second_log, apps, "-vvv")
            changed = {host: n for host, n in second.changed.items() if n}
            if changed:
                pytest.fail(
                    f"the second site.yml run changed tasks: {changed} (output {second_log})",
                    pytrace=False,
                )
            print(f"converged_lab: ready in {time.monotonic() - started:.0f} s")
            yield ConvergedLab(
                lab=lab,
                inventory=playbooks.LAB_INVENTORY,
                apps_source=apps,
                demo=demo,
                first_converge=first,
                second_converge=second,
                second_converge_log=second_log,
                brought_up=brought_up,
            )
        finally:
            # SCNODE_LAB_KEEP=1 leaves a lab this session made running (to look at it after)
            if brought_up and os.environ.get("SCNODE_LAB_KEEP") != "1":
                lab.down()
