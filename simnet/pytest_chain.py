"""pytest fixtures for the simulated chain daemon: `chain_node` and `start_chain_node`.

    def test_x(start_chain_node):
        node = start_chain_node(coin="azcoin")
        node.rpc("createwallet", "w")
        addr = node.rpc("getnewaddress", wallet="w")
        node.mine(101, addr)

Each node is a `python -m simnet.chain` subprocess on free loopback ports with an rpcauth user
generated at test time; it is stopped and its temporary datadir removed after the test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import importlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from simnet.ports import free_port as free_port

ZMQ_TOPICS = ("hashblock", "hashtx", "rawblock", "rawtx", "sequence")
# a real daemon instead of the stand-in when set (tests/daemons.py, docs/real-daemons.md)
REAL_ENV = {"bitcoin": "SCNODE_REAL_BITCOIND", "azcoin": "SCNODE_REAL_AZCOIND"}


class ChainRPCError(Exception):
    """A JSON-RPC error answered by the node."""

    def __init__(self, code: int, message: str, http_status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status


def make_rpcauth(user: str, password: str) -> str:
    """A `rpcauth=` value as share/rpcauth/rpcauth.py makes it."""
    salt = secrets.token_hex(16)
    digest = hmac.new(salt.encode(), password.encode(), hashlib.sha256).hexdigest()
    return f"{user}:{salt}${digest}"


class ChainNode:
    """Handle on one running chain daemon: the stand-in, or — when the coin's
    `SCNODE_REAL_<COIN>D` variable names a binary — a real daemon (tests/daemons.py), so the
    same tests run in both modes."""

    def __new__(cls, *args: Any, **kwargs: Any) -> ChainNode:
        coin = args[1] if len(args) > 1 else kwargs.get("coin", "")
        if cls is ChainNode and os.environ.get(REAL_ENV.get(coin, ""), ""):
            real: type[ChainNode] = importlib.import_module("tests.daemons").RealChainNode
            return object.__new__(real)
        return object.__new__(cls)

    def __init__(
        self,
        datadir: Path,
        coin: str,
        network: str,
        emulate: str | None,
        conf: dict[str, Any],
        extra_args: list[str],
    ) -> None:
        self.datadir = datadir
        self.coin = coin
        self.network = network
        self.emulate = emulate
        self.rpc_port = free_port()
        self.p2p_port = free_port()
        self.control_port = free_port()
        self.user = "simnet-test"
        self.password = secrets.token_urlsafe(18)
        self.zmq = {t: f"tcp://127.0.0.1:{free_port()}" for t in ZMQ_TOPICS}
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._conf = conf
        self._write_conf(conf)

    # --- life cycle --------------------------------------------------------------------------

    @property
    def conf_path(self) -> Path:
        return self.datadir / f"{self.coin}.conf"

    def _write_conf(self, conf: dict[str, Any]) -> None:
        net_lines = [
            f"rpcport={self.rpc_port}",
            f"port={self.p2p_port}",
            "bind=127.0.0.1",
        ]
        top = [
            "server=1",
            f"rpcauth={make_rpcauth(self.user, self.password)}",
            "fallbackfee=0.0002",
        ]
        top += [f"zmqpub{t}={a}" for t, a in self.zmq.items()]
        for key, value in conf.items():
            for v in value if isinstance(value, list) else [value]:
                line = f"{key}={int(v) if isinstance(v, bool) else v}"
                (net_lines if key in ("addnode", "connect", "wallet", "seednode") else top).append(
                    line
                )
        section = {"main": "", "test": "[test]", "regtest": "[regtest]"}[self.network]
        head = (
            ["regtest=1"]
            if self.network == "regtest"
            else (["testnet=1"] if self.network == "test" else [])
        )
        body = head + top + ([section] if section else []) + net_lines
        self.conf_path.write_text("\n".join(body) + "\n")

    @property
    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "simnet.chain",
            f"-datadir={self.datadir}",
            f"--coin={self.coin}",
            f"--control-port={self.control_port}",
        ]
        if self.emulate:
            cmd.append(f"--emulate={self.emulate}")
        return cmd + self.extra_args

    @property
    def cli_command(self) -> list[str]:
        """The `bitcoin-cli` of this node with its datadir, conf and credentials (append the
        method and arguments)."""
        return [
            sys.executable,
            "-m",
            "simnet.cli",
            f"--coin={self.coin}",
            f"-datadir={self.datadir}",
            f"-conf={self.conf_path}",
            f"-rpcuser={self.user}",
            f"-rpcpassword={self.password}",
        ]

    @property
    def real(self) -> bool:
        """True on a real daemon (tests/daemons.py), False on the stand-in."""
        return False

    def _new_ports(self) -> None:
        self.rpc_port, self.p2p_port, self.control_port = free_port(), free_port(), free_port()
        self.zmq = {t: f"tcp://127.0.0.1:{free_port()}" for t in ZMQ_TOPICS}
        self._write_conf(self._conf)

    def start(self, timeout: float = 30.0) -> ChainNode:
        """Start the daemon; on a first start that lost a port race, retry on new ports."""
        for attempt in range(3):
            try:
                return self._start_once(timeout)
            except RuntimeError as err:
                if (
                    attempt == 2
                    or "in use" not in str(err)
                    or (self.netdir / "simnet-chain.json").exists()
                ):
                    raise
                self._new_ports()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> ChainNode:
        log = open(self.datadir / "simnet-stdout.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            self.command, stdout=log, stderr=subprocess.STDOUT, cwd=str(self.datadir)
        )
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"chain node exited with {self.proc.returncode}: {self.output()}"
                )
            try:
                self.control("status", http_method="GET")
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"chain node did not start: {self.output()}")

    def output(self) -> str:
        path = self.datadir / "simnet-stdout.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """Clean shutdown by SIGTERM; return the exit status."""
        self._close()
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        self._close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def crash(self) -> int:
        """Control API crash: exit without clean shutdown; return the exit status (137)."""
        self.control("crash")
        assert self.proc is not None
        return self.proc.wait(10)

    def restart(self) -> ChainNode:
        """Stop (if running) and start again on the same datadir and ports."""
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        return self.start()

    # --- JSON-RPC ----------------------------------------------------------------------------

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}/"

    @property
    def service_url(self) -> str:
        """URL with credentials, e.g. for `bitcoin.rpc.Proxy(service_url=...)`."""
        return f"http://{self.user}:{self.password}@127.0.0.1:{self.rpc_port}"

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def raw_request(
        self,
        body: bytes,
        path: str = "/",
        auth: tuple[str, str] | None = None,
        method: str = "POST",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request to the RPC port on a fresh connection: (status, headers, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.rpc_port, timeout=30)
        hdrs = dict(headers or {})
        user, password = auth or (self.user, self.password)
        if auth != ("", ""):
            hdrs["Authorization"] = (
                "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            )
        try:
            conn.request(method, path, body=body if method == "POST" else None, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def rpc(self, method: str, *params: Any, wallet: str | None = None, **named: Any) -> Any:
        """Call `method` with positional or (only) named params; raise ChainRPCError on an error."""
        if params and named:
            raise TypeError("pass either positional or named parameters, as bitcoind takes them")
        payload = {
            "jsonrpc": "1.0",
            "id": "t",
            "method": method,
            "params": named if named else list(params),
        }
        path = "/" if wallet is None else "/wallet/" + urllib.parse.quote(wallet, safe="")
        auth = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.rpc_port, timeout=60)
            try:
                self._conn.request(
                    "POST",
                    path,
                    body=json.dumps(payload, default=str),
                    headers={"Authorization": auth, "Content-Type": "application/json"},
                )
                resp = self._conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError):
                self._close()
                if attempt == 2:
                    raise
        reply = json.loads(data, parse_float=Decimal)
        if reply.get("error"):
            raise ChainRPCError(reply["error"]["code"], reply["error"]["message"], resp.status)
        return reply["result"]

    # --- control API -------------------------------------------------------------------------

    def control(self, name: str, http_method: str = "POST", **body: Any) -> Any:
        """Call the control API (simnet/README.md); raise ChainRPCError on an error answer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=60)
        try:
            conn.request(
                http_method,
                f"/{name}",
                body=json.dumps(body) if http_method == "POST" else None,
                headers={"Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            data = json.loads(resp.read())
        finally:
            conn.close()
        if resp.status != 200:
            raise ChainRPCError(int(data.get("code", -1)), str(data.get("error")), resp.status)
        return data

    def mine(self, n: int = 1, address: str | None = None) -> list[str]:
        return list(self.control("mine", blocks=n, address=address)["hashes"])

    def pay(self, address: str, sats: int, **options: Any) -> str:
        return str(self.control("pay", address=address, sats=sats, **options)["txid"])

    def reorg(self, depth: int, **options: Any) -> dict[str, Any]:
        return dict(self.control("reorg", depth=depth, **options))

    def stall(self, seconds: float = 5.0, method: str | None = None) -> None:
        self.control("stall", seconds=seconds, method=method)

    def fail_next(
        self,
        code: int = -1,
        message: str = "simulated failure",
        method: str | None = None,
        count: int = 1,
    ) -> None:
        self.control("fail_next", code=code, message=message, method=method, count=count)

    def warmup(
        self, message: str | None = "Loading block index…", seconds: float | None = None
    ) -> None:
        self.control("warmup", message=message, seconds=seconds)

    @property
    def netdir(self) -> Path:
        return self.datadir / {"main": "", "test": "testnet3", "regtest": "regtest"}[self.network]


class StandInChainNode(ChainNode):
    """Always the stand-in, whatever the real-daemon variables say (to compare the two)."""


@pytest.fixture
def start_chain_node() -> Iterator[Callable[..., ChainNode]]:
    """Factory: start_chain_node(chain="bitcoin"|"azcoin"|<micro>, version=None|"v30"|"v23",
    network="regtest", args=[], **conf) -> a started ChainNode, stopped after the test."""
    nodes: list[ChainNode] = []
    dirs: list[str] = []

    def start(
        chain: str = "bitcoin",
        version: str | None = None,
        network: str = "regtest",
        args: list[str] | None = None,
        datadir: Path | None = None,
        coin: str | None = None,
        **conf: Any,
    ) -> ChainNode:
        # `chain` names the coin (bitcoin, azcoin, a microcurrency); `coin=` is an alias, and a
        # Core network name given as `chain` selects the network of a Bitcoin node.
        if chain in ("main", "test", "regtest"):
            network, chain = chain, "bitcoin"
        coin = coin or chain
        if datadir is None:
            tmp = tempfile.mkdtemp(prefix=f"simnet-{coin}-")
            dirs.append(tmp)
            datadir = Path(tmp)
        node = ChainNode(datadir, coin, network, version, conf, list(args or []))
        nodes.append(node)
        return node.start()

    yield start
    for node in nodes:
        node.stop()
        node.kill()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def chain_node(start_chain_node: Callable[..., ChainNode]) -> ChainNode:
    """A Bitcoin (v30) regtest stand-in with no wallet loaded."""
    return start_chain_node()


__all__ = [
    "REAL_ENV",
    "ChainNode",
    "ChainRPCError",
    "StandInChainNode",
    "chain_node",
    "free_port",
    "make_rpcauth",
    "start_chain_node",
]
_ = os
