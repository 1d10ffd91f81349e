"""Ports on this machine's 127.0.0.1 forwarded into a lab: the dashboards and the sign-in.

A browser on the machine running the lab opens ``https://127.0.0.1:8443/`` (the reverse proxy on
the apps host, port 443) and is sent to the BTCofAZ stand-in at ``http://127.0.0.1:8480/`` (the
simnet OIDC provider on the cluster host). The lab's addresses exist only inside its network
namespaces, so one forwarder process listens here and connects from inside the lab namespace:
its listening sockets are opened in this machine's namespace first, then the process enters the
lab namespace (``setns``), where every later connection is made. (This machine's PID 1 is not
systemd, so there is no socket unit to do it.)

The forwarder is tracked like the lab's other processes (PID + start time in
``<state>/<lab>/forward.json``), stopped by ``down``, and ends by itself once the lab namespace
is gone, so a lab removed some other way never leaves the ports taken.

``python -m scnode_lab.forward serve --netns NS --map 127.0.0.1:8443=10.10.0.14:443 ...`` is
the process itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scnode_lab import network
from scnode_lab.process import LabError, TrackedProcess, run, spawn_detached

if TYPE_CHECKING:
    from scnode_lab.lab import Lab

FORWARD_FILE = "forward.json"
LISTEN_HOST = "127.0.0.1"
CLONE_NEWNET = 0x40000000
_NETNS_DIR = Path("/run/netns")
# Written on cluster.<lab> by site.yml's lab-only OIDC play (inventories/lab/.../lab_oidc.yml).
DEMO_CONFIG = "/opt/simnet-oidc/config.json"


@dataclass(frozen=True)
class Forward:
    """One port of this machine's loopback forwarded to a lab host's port."""

    what: str
    listen_port: int
    host: str
    port: int
    scheme: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://{LISTEN_HOST}:{self.listen_port}/"


# What the default lab publishes to this machine (inventories/lab: the dashboard's public URL
# and the OIDC issuer are these URLs).
FORWARDS: tuple[Forward, ...] = (
    Forward("member dashboard (reverse proxy)", 8443, "apps", 443, "https"),
    Forward("BTCofAZ sign-in (SIMULATION: simnet OIDC provider)", 8480, "cluster", 8480, "http"),
)


def _record_path(state_dir: Path) -> Path:
    return state_dir / FORWARD_FILE


def info(state_dir: Path) -> dict[str, Any] | None:
    """The recorded forwarder (process, forwards), or None."""
    try:
        data: dict[str, Any] = json.loads(_record_path(state_dir).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


def running(state_dir: Path) -> bool:
    data = info(state_dir)
    return data is not None and TrackedProcess.from_json(data["process"]).alive()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LISTEN_HOST, port))
        except OSError:
            return False
    return True


def ensure(lab: str, state_dir: Path, hosts: dict[str, IPv4Address], timeout: float = 10) -> str:
    """Start the forwarder of lab `lab` unless it runs; returns what it forwards (one line per
    port) or why it forwards nothing."""
    if running(state_dir):
        return describe(state_dir)
    wanted = [f for f in FORWARDS if f.host in hosts]
    if not wanted:
        return "no port forwarded (the lab has no apps or cluster host)"
    taken = [f.listen_port for f in wanted if not _port_free(f.listen_port)]
    if taken:
        return (
            f"no port forwarded: {LISTEN_HOST}:{', '.join(map(str, taken))} already taken "
            "(another lab's forwarder?)"
        )
    argv = [sys.executable, "-m", "scnode_lab.forward", "serve", "--netns", network.lab_netns(lab)]
    for f in wanted:
        argv += ["--map", f"{LISTEN_HOST}:{f.listen_port}={hosts[f.host]}:{f.port}"]
    proc = spawn_detached(argv, state_dir / "forward.log")
    record = {"process": proc.to_json(), "forwards": [f.__dict__ for f in wanted]}
    tmp = state_dir / (FORWARD_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.rename(_record_path(state_dir))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.alive():
        if all(not _port_free(f.listen_port) for f in wanted):
            return describe(state_dir)
        time.sleep(0.1)
    stop(state_dir)
    raise LabError(f"the forwarder did not listen: see {state_dir}/forward.log")


def describe(state_dir: Path) -> str:
    """One line per forwarded port, or an empty string."""
    data = info(state_dir)
    if data is None:
        return ""
    return "\n".join(
        f"{Forward(**f).url} -> {f['host']}:{f['port']}  {f['what']}" for f in data["forwards"]
    )


def demo_logins(lab: Lab, config: str = DEMO_CONFIG) -> list[dict[str, str]]:
    """The demo members' BTCofAZ (SIMULATION) logins, read from the cluster host where the lab's
    playbook generated them (empty before that)."""
    try:
        answer = run(lab.ssh("cluster", f"cat {config}"), check=False, timeout=15)
    except LabError:
        return []
    if answer.returncode != 0:
        return []
    try:
        users = json.loads(answer.stdout).get("users", [])
    except json.JSONDecodeError:
        return []
    return [{"login": str(u["login"]), "password": str(u["password"])} for u in users]


def stop(state_dir: Path) -> None:
    """Stop the lab's forwarder (by its recorded PID) and forget it."""
    data = info(state_dir)
    if data is not None:
        TrackedProcess.from_json(data["process"]).stop(5)
    with contextlib.suppress(FileNotFoundError):
        _record_path(state_dir).unlink()


# ------------------------------------------------------------------ the forwarder process
def _enter_netns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(_NETNS_DIR / name, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


def _handler(target: tuple[str, int]) -> Any:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.wait_for(asyncio.open_connection(*target), 10)
        except (OSError, TimeoutError):
            client_w.close()
            return
        try:
            await asyncio.gather(_pipe(client_r, upstream_w), _pipe(upstream_r, client_w))
        finally:
            for w in (client_w, upstream_w):
                w.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await w.wait_closed()

    return handle


async def _serve(netns: str, maps: Sequence[tuple[socket.socket, tuple[str, int]]]) -> None:
    servers = [await asyncio.start_server(_handler(target), sock=sock) for sock, target in maps]
    for sock, target in maps:
        host, port = sock.getsockname()[:2]
        print(f"forwarding {host}:{port} -> {target[0]}:{target[1]} in {netns}", flush=True)
    # The lab namespace gone (lab removed) ends the forwarder: the ports are free again.
    gone = asyncio.Event()
    loop = asyncio.get_running_loop()

    def look() -> None:
        if (_NETNS_DIR / netns).exists():
            loop.call_later(2, look)
        else:
            gone.set()

    look()
    await gone.wait()
    print(f"{netns} is gone: stopping", flush=True)
    for server in servers:
        server.close()


def _listen(spec: str) -> tuple[socket.socket, tuple[str, int]]:
    listen, _, target = spec.partition("=")
    lhost, _, lport = listen.rpartition(":")
    thost, _, tport = target.rpartition(":")
    if not (lhost and lport.isdigit() and thost and tport.isdigit()):
        raise SystemExit(f"--map {spec!r}: expected HOST:PORT=HOST:PORT")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((lhost, int(lport)))
    sock.listen(128)
    sock.setblocking(False)
    return sock, (thost, int(tport))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scnode_lab.forward")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="forward ports of this namespace into a lab namespace")
    serve.add_argument("--netns", required=True, help="the lab namespace (scnl-<lab>)")
    serve.add_argument("--map", action="append", required=True, help="HOST:PORT=HOST:PORT")
    args = parser.parse_args(argv)
    # Listening sockets first, here; then every connection is made from the lab namespace.
    maps = [_listen(spec) for spec in args.map]
    _enter_netns(args.netns)
    asyncio.run(_serve(args.netns, maps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
