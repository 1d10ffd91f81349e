"""A lab: N test hosts on one subnet. `up`, `down` and `status`, all idempotent.

State (recorded PIDs, the shape of the lab, its inventory) lives in the state dir
(`/run/scnode-lab/<name>/`); each host's writable layer lives under the cache
(`/var/cache/scnode-lab/labs/<name>/<host>/`). `down` stops only processes whose PID (and
start time) it recorded, and removes the lab's namespaces, mounts and layers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from scnode_lab import container, image, inventory, mirror, network
from scnode_lab.process import LabError, TrackedProcess, run
from scnode_lab.settings import LabPaths
from scnode_lab.ssh import ensure_key, ssh_argv, wait_ready

DEFAULT_NAME = "lab"
DEFAULT_SUBNET = IPv4Network("10.10.0.0/24")
# DESIGN §8: the cluster host at .2, the node's service hosts from .11.
DEFAULT_HOSTS: tuple[tuple[str, int], ...] = (
    ("cluster", 2),
    ("chain", 11),
    ("lightning", 12),
    ("mining", 13),
    ("apps", 14),
)
FIRST_AUTO_HOST = 11
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
# Lab names may also carry `_` (molecule scenario names do); nspawn machine names may not.
_LAB_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
STATE_FILE = "state.json"
INVENTORY_FILE = "inventory.yml"


@dataclass(frozen=True)
class HostSpec:
    name: str
    ip: IPv4Address


@dataclass(frozen=True)
class LabSpec:
    """The shape of a lab: its name, subnet and hosts."""

    name: str
    subnet: IPv4Network
    hosts: tuple[HostSpec, ...]

    @property
    def gateway(self) -> IPv4Address:
        return self.subnet.network_address + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "subnet": str(self.subnet),
            "hosts": [{"name": h.name, "ip": str(h.ip)} for h in self.hosts],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabSpec:
        return cls(
            name=data["name"],
            subnet=IPv4Network(data["subnet"]),
            hosts=tuple(HostSpec(h["name"], IPv4Address(h["ip"])) for h in data["hosts"]),
        )


def check_name(kind: str, name: str) -> str:
    """A lab name (letters, digits, '-', '_') or a host name (no '_': it is a hostname)."""
    pattern, allowed = (_LAB_NAME, "'-' and '_'") if kind == "lab" else (_NAME, "'-'")
    if not pattern.match(name):
        raise LabError(f"{kind} name {name!r}: use lower-case letters, digits and {allowed}")
    return name


def lab_spec(
    name: str = DEFAULT_NAME,
    subnet: IPv4Network | str = DEFAULT_SUBNET,
    hosts: str | Sequence[str] | None = None,
) -> LabSpec:
    """Build and check a lab's shape.

    `hosts` is `name=ip,...` (or a list of such items); `ip` may be a full address or the host
    number in the subnet, and `name` alone takes the next free number from .11. Without hosts,
    the default lab's five hosts at the same host numbers.
    """
    check_name("lab", name)
    net = IPv4Network(subnet)
    if net.prefixlen > 29:
        raise LabError(f"subnet {net} is too small for a lab")
    if hosts is None:
        items = [f"{host}={number}" for host, number in DEFAULT_HOSTS]
    elif isinstance(hosts, str):
        items = [item.strip() for item in hosts.split(",") if item.strip()]
    else:
        items = list(hosts)
    if not items:
        raise LabError("a lab needs at least one host")
    gateway = net.network_address + 1
    wanted: list[tuple[str, IPv4Address | None]] = []
    for item in items:
        host, _, where = item.partition("=")
        check_name("host", host.strip())
        wanted.append((host.strip(), _address(net, where.strip()) if where.strip() else None))
    taken = {ip for _, ip in wanted if ip is not None} | {gateway}
    following = net.network_address + FIRST_AUTO_HOST
    result: list[HostSpec] = []
    for host, ip in wanted:
        if ip is None:
            while following in taken:
                following += 1
            ip = following
            taken.add(ip)
        if ip not in net or ip in (net.network_address, net.broadcast_address, gateway):
            raise LabError(f"{host}: {ip} is not a usable host address in {net}")
        result.append(HostSpec(host, ip))
    names = [h.name for h in result]
    ips = [h.ip for h in result]
    if len(set(names)) != len(names) or len(set(ips)) != len(ips):
        raise LabError(f"host names and addresses must be unique: {items}")
    return LabSpec(name=name, subnet=net, hosts=tuple(result))


def _address(net: IPv4Network, where: str) -> IPv4Address:
    if where.isdigit():
        return net.network_address + int(where)
    return IPv4Address(where)


@dataclass
class LabState:
    """What `up` started, as recorded on disk."""

    spec: LabSpec
    image_key: str
    uplink: TrackedProcess | None = None
    hosts: dict[str, TrackedProcess] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_json(),
            "image_key": self.image_key,
            "uplink": None if self.uplink is None else self.uplink.to_json(),
            "hosts": {name: proc.to_json() for name, proc in self.hosts.items()},
            "started": self.started,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        uplink = data.get("uplink")
        return cls(
            spec=LabSpec.from_json(data["spec"]),
            image_key=data["image_key"],
            uplink=None if uplink is None else TrackedProcess.from_json(uplink),
            hosts={n: TrackedProcess.from_json(p) for n, p in data.get("hosts", {}).items()},
            started=float(data.get("started", 0)),
        )

    def healthy(self) -> bool:
        return (
            self.uplink is not None
            and self.uplink.alive()
            and set(self.hosts) == {h.name for h in self.spec.hosts}
            and all(proc.alive() for proc in self.hosts.values())
        )


@dataclass(frozen=True)
class HostStatus:
    name: str
    ip: str
    running: bool
    ssh: bool
    system_state: str
    pss_mib: float | None


def _say(message: str) -> None:
    print(f"scnode-lab: {message}", file=sys.stderr, flush=True)


class Lab:
    """One named lab on this machine."""

    def __init__(self, name: str = DEFAULT_NAME, paths: LabPaths | None = None) -> None:
        self.name = check_name("lab", name)
        self.paths = paths or LabPaths.from_env()
        self.state_dir = self.paths.lab_state(name)
        self.layers = self.paths.lab_layers(name)

    # -------------------------------------------------------------- files
    @property
    def inventory_path(self) -> Path:
        return self.state_dir / INVENTORY_FILE

    @property
    def key(self) -> Path:
        return self.paths.ssh_key

    def load(self) -> LabState | None:
        try:
            data = json.loads((self.state_dir / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        return LabState.from_json(data)

    def _save(self, state: LabState) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        tmp = self.state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state.to_json(), indent=2))
        tmp.rename(self.state_dir / STATE_FILE)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with _lock_file(self.paths, f"{self.name}.lock"):
            yield

    # -------------------------------------------------------------- up
    def up(self, spec: LabSpec, *, timeout: float = 90) -> LabState:
        """Start the lab (or confirm the running one has this shape); ready when SSH answers."""
        if spec.name != self.name:
            raise LabError(f"spec for lab {spec.name!r} given to lab {self.name!r}")
        with self._locked():
            state = self.load()
            if state is not None and state.healthy():
                if state.spec != spec:
                    raise LabError(
                        f"lab {self.name} is up with another shape "
                        f"({state.spec.subnet}, {[h.name for h in state.spec.hosts]}): "
                        f"run `python -m scnode_lab down --name {self.name}` first"
                    )
                self._wait_ssh(state, timeout)
                self._write_inventory(state)
                _say(f"lab {self.name} is already up")
                current = image.image_for(self.paths).key
                if state.image_key != current:
                    _say(
                        f"it runs image {state.image_key}, the package list now gives {current}:"
                        f" `down --name {self.name}` and `up` again to use it"
                    )
                mirror.ensure(self.name, self.state_dir, spec.gateway)
                return state
            self._teardown(state)
            state = self._start(spec, timeout)
            url = mirror.ensure(self.name, self.state_dir, spec.gateway)
            _say(f"release mirror (SIMULATION archives) at {url} inside the lab")
            return state

    def _claim(self, spec: LabSpec, image_key: str) -> LabState:
        """Record the new lab, refusing a subnet another lab uses. Two labs on one subnet
        would work network-wise (separate namespaces), but Ansible's SSH ControlPersist
        sockets are keyed by address: their connections would cross over."""
        with _machine_lock(self.paths):
            for other in running_labs(self.paths):
                state = other.load() if other.name != self.name else None
                if state is not None and state.spec.subnet.overlaps(spec.subnet):
                    raise SubnetInUseError(
                        f"subnet {spec.subnet} overlaps lab {other.name}'s {state.spec.subnet}"
                    )
            state = LabState(spec=spec, image_key=image_key)
            self._save(state)
            return state

    def _start(self, spec: LabSpec, timeout: float) -> LabState:
        started = time.monotonic()
        built = image.ensure_image(self.paths)
        public_key = ensure_key(self.key).read_text()
        state = self._claim(spec, built.key)
        in_use = {built.key} | {s.image_key for s in _states(self.paths)}
        for key in image.prune(self.paths, in_use):
            _say(f"removed the outdated image {key}")
        try:
            network.create_lab_netns(self.name, spec.subnet)
            state.uplink = network.start_uplink(self.name, self.state_dir / "uplink.log")
            self._save(state)
            hosts_lines = [
                f"{h.ip}\t{inventory.host_fqdn(h.name, self.name)} {h.name}" for h in spec.hosts
            ]
            with ThreadPoolExecutor(max_workers=len(spec.hosts)) as pool:
                roots = dict(
                    zip(
                        [h.name for h in spec.hosts],
                        pool.map(
                            lambda h: self._prepare_host(h, built.rootfs, hosts_lines, public_key),
                            spec.hosts,
                        ),
                        strict=True,
                    )
                )
            for index, host in enumerate(spec.hosts):
                netns, _ = network.attach_host(self.name, index, host.name, host.ip, spec.subnet)
                state.hosts[host.name] = container.boot(
                    roots[host.name],
                    f"{self.name}-{host.name}".replace("_", "-"),
                    host.name,
                    netns,
                    container.cgroup_dirs(self.name, host.name),
                    self.state_dir / f"{host.name}.log",
                )
                self._save(state)
            booted = time.monotonic()
            self._wait_ssh(state, timeout)
        except BaseException:
            _say(f"lab {self.name} failed to start; removing what was made")
            self._teardown(state)
            raise
        self._write_inventory(state)
        _say(
            f"lab {self.name} up: {len(spec.hosts)} hosts on {spec.subnet} in "
            f"{time.monotonic() - started:.1f} s (SSH ready {time.monotonic() - booted:.1f} s "
            f"after boot); inventory {self.inventory_path}"
        )
        return state

    def _prepare_host(
        self, host: HostSpec, lower: Path, hosts_lines: list[str], public_key: str
    ) -> Path:
        root = container.mount_root(self.layers / host.name, lower)
        fqdn = inventory.host_fqdn(host.name, self.name)
        container.write_identity(root, host.name, fqdn, hosts_lines, public_key)
        return root

    def _wait_ssh(self, state: LabState, timeout: float) -> None:
        def ready(host: HostSpec) -> float:
            return wait_ready(self.name, self.key, str(host.ip), timeout)

        with ThreadPoolExecutor(max_workers=len(state.spec.hosts)) as pool:
            list(pool.map(ready, state.spec.hosts))

    def _write_inventory(self, state: LabState) -> None:
        hosts = [(h.name, str(h.ip)) for h in state.spec.hosts]
        inventory.write(self.inventory_path, self.name, self.key, hosts)

    # -------------------------------------------------------------- down
    def down(self) -> bool:
        """Remove the lab. Returns False when there was nothing to remove."""
        with self._locked():
            state = self.load()
            leftovers = self._leftover_namespaces() or container.mounts_under(self.layers)
            if state is None and not leftovers and not self.layers.exists():
                return False
            started = time.monotonic()
            self._teardown(state)
            _say(f"lab {self.name} down in {time.monotonic() - started:.1f} s")
            return True

    def _leftover_namespaces(self) -> list[str]:
        lab_ns = network.lab_netns(self.name)
        return [ns for ns in network.list_netns() if ns == lab_ns or ns.startswith(lab_ns + ".")]

    def _teardown(self, state: LabState | None) -> None:
        mirror.stop(self.state_dir)
        if state is not None:
            with ThreadPoolExecutor(max_workers=max(1, len(state.hosts))) as pool:
                # SIGTERM makes nspawn shut the container down cleanly (systemd halts).
                list(pool.map(lambda proc: proc.stop(20), state.hosts.values()))
        lab_ns = network.lab_netns(self.name)
        for ns in self._leftover_namespaces():
            if ns == lab_ns:
                continue
            # Only the containers of this lab live in its host namespaces; anything still
            # there lost its nspawn (it was never recorded): end it before removing the ns.
            for pid in network.netns_pids(ns):
                with contextlib.suppress(LabError):
                    TrackedProcess.of(pid).stop(5)
            network.delete_netns(ns)
        container.unmount_all(self.layers)
        container.remove_cgroups(self.name)
        if state is not None and state.uplink is not None:
            state.uplink.stop(5)
        network.delete_netns(lab_ns)
        if self.layers.exists():
            shutil.rmtree(self.layers)
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)

    # -------------------------------------------------------------- status
    def status(self) -> list[HostStatus]:
        """Each host: running, SSH answering, systemd's state, memory (PSS) of its processes."""
        state = self.load()
        if state is None:
            return []
        with ThreadPoolExecutor(max_workers=len(state.spec.hosts)) as pool:
            return list(pool.map(lambda h: self._host_status(state, h), state.spec.hosts))

    def _host_status(self, state: LabState, host: HostSpec) -> HostStatus:
        proc = state.hosts.get(host.name)
        running = proc is not None and proc.alive()
        ssh_ok, system_state = False, "-"
        if running:
            answer = run(
                ssh_argv(self.name, self.key, str(host.ip), "systemctl is-system-running"),
                check=False,
                timeout=15,
            )
            ssh_ok = answer.returncode in (0, 1) and bool(answer.stdout.strip())
            system_state = answer.stdout.strip() or "no answer"
        pss = None
        if running and proc is not None:
            pids = [proc.pid, *network.netns_pids(network.host_netns(self.name, host.name))]
            pss = sum(_pss_kib(pid) for pid in pids) / 1024
        return HostStatus(host.name, str(host.ip), running, ssh_ok, system_state, pss)

    def ssh(self, host: str, command: Sequence[str] | str) -> list[str]:
        """The ssh argv that runs `command` on `host` of this lab."""
        state = self.load()
        if state is None:
            raise LabError(f"lab {self.name} is not up")
        for spec in state.spec.hosts:
            if spec.name == host:
                return ssh_argv(self.name, self.key, str(spec.ip), command)
        raise LabError(f"lab {self.name} has no host {host!r}")


class SubnetInUseError(LabError):
    """Another lab on this machine already uses (part of) the subnet."""


@contextlib.contextmanager
def _lock_file(paths: LabPaths, name: str) -> Iterator[None]:
    locks = paths.state_root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / name, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _machine_lock(paths: LabPaths) -> contextlib.AbstractContextManager[None]:
    """Held while a lab claims its subnet."""
    return _lock_file(paths, "subnets.lock")


def _states(paths: LabPaths | None = None) -> list[LabState]:
    states = []
    for lab in running_labs(paths):
        state = lab.load()
        if state is not None:
            states.append(state)
    return states


def used_subnets(paths: LabPaths | None = None) -> list[IPv4Network]:
    """Subnets of the labs on this machine."""
    return [state.spec.subnet for state in _states(paths)]


def _pss_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def running_labs(paths: LabPaths | None = None) -> list[Lab]:
    """Every lab with a state dir on this machine."""
    paths = paths or LabPaths.from_env()
    if not paths.state_root.exists():
        return []
    return [
        Lab(entry.name, paths)
        for entry in sorted(paths.state_root.iterdir())
        if (entry / STATE_FILE).exists()
    ]
