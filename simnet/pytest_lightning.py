"""pytest fixtures for the Lightning stand-in and the simulated SC Cluster hub.

Fixtures:
- `ln_chain`: a bitcoind for the stand-ins to follow. Until `simnet.chain` is usable this is the
  tiny `simnet.lightning.minichain` (regtest, bcli calls + generatetoaddress/pruneblockchain).
- `start_lightning_node(**kw)`: starts a `python -m simnet.lightning` process; returns a
  `LightningNodeHandle` (rpc socket path, pyln `LightningRpc`, cl-zmq endpoints, control calls).
- `lightning_hub`: a hub node (`simnet-role=hub`).
- `lightning_pair`: (node, hub) with one large channel, node → hub, CHANNELD_NORMAL on both.

Every process and port is per test; everything is stopped at teardown.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from simnet.lightning.options import ZMQ_OPTIONS
from simnet.ports import free_port as free_port

CLZMQ_PLUGIN = "/usr/local/libexec/cl-zmq/cl-zmq.py"


def wait_for(predicate: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    """Poll until predicate() is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


class ChainHandle:
    """A bitcoind JSON-RPC endpoint (minichain) with the credentials the stand-ins use."""

    def __init__(self, tmp: Path) -> None:
        # served from a thread of the test process: one process less to start per test
        from aiohttp import web

        from simnet.lightning.minichain import MiniChain, make_app

        self.port = free_port()
        self.user = "lnuser"
        self.password = base64.b16encode(os.urandom(8)).decode()
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(
            make_app(MiniChain(), self.user, self.password), access_log=None
        )

        async def serve() -> None:
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

        self.loop.run_until_complete(serve())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        wait_for(self._up, 15, "minichain")

    def _up(self) -> bool:
        try:
            self.call("getblockcount")
            return True
        except OSError:
            return False

    def call(self, method: str, *params: Any) -> Any:
        """One JSON-RPC call; bitcoind errors raise RuntimeError(code, message)."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/",
            data=json.dumps(
                {"jsonrpc": "1.0", "id": 1, "method": method, "params": list(params)}
            ).encode(),
            headers={
                "Authorization": "Basic "
                + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback http)
                reply = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            reply = json.loads(exc.read())
        if reply.get("error"):
            raise RuntimeError(reply["error"]["code"], reply["error"]["message"])
        return reply["result"]

    def mine(self, count: int = 1) -> list[str]:
        """Mine blocks (coinbase to an anyone-can-spend-looking address)."""
        return list(
            self.call("generatetoaddress", count, "bcrt1qcxsx0nsaqs968gp6rx4rsmc8zy22wnw4re73kg")
        )

    def pay(self, address: str, sats: int) -> str:
        """Pay an address from outside (mempool until mined)."""
        return str(self.call("simnet_pay", address, sats))

    def height(self) -> int:
        """Chain tip height."""
        return int(self.call("getblockcount"))

    def args(self) -> list[str]:
        """lightningd options pointing at this bitcoind."""
        return [
            "--bitcoin-rpcconnect=127.0.0.1",
            f"--bitcoin-rpcport={self.port}",
            f"--bitcoin-rpcuser={self.user}",
            f"--bitcoin-rpcpassword={self.password}",
        ]

    def stop(self) -> None:
        """Stop serving and close the loop."""
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class StandinChain(ChainHandle):
    """The same interface on a `simnet.chain` bitcoind stand-in (from simnet.pytest_chain)."""

    def __init__(self, chain_node: Any) -> None:  # simnet.pytest_chain.ChainNode
        self.node = chain_node
        self.port = int(chain_node.rpc_port)
        self.user = str(chain_node.user)
        self.password = str(chain_node.password)

    def call(self, method: str, *params: Any) -> Any:
        """One JSON-RPC call on the stand-in."""
        return self.node.rpc(method, *params)

    def mine(self, count: int = 1) -> list[str]:
        """Mine blocks through the stand-in's control API."""
        return list(self.node.mine(count))

    def pay(self, address: str, sats: int) -> str:
        """Pay an address from the stand-in's outside wallet."""
        return str(self.node.pay(address, sats))

    def stop(self) -> None:
        """The chain fixture stops the stand-in."""


class LightningNodeHandle:
    """A running `python -m simnet.lightning` process and the ways to talk to it."""

    def __init__(
        self,
        base: Path,
        chain: ChainHandle,
        *,
        alias: str,
        role: str = "node",
        zmq: bool = True,
        zmq_unset: tuple[str, ...] = (),
        extra: tuple[str, ...] = (),
        use_conf: bool = True,
    ) -> None:
        self.base = base
        self.chain = chain
        self.alias = alias
        self.role = role
        self.lightning_dir = base / "lightning"
        self.network_dir = self.lightning_dir / "regtest"
        self.rpc_path = self.network_dir / "lightning-rpc"
        self.log_path = base / "lightningd.log"
        self.db_main = base / "db" / "lightningd.sqlite3"
        self.db_backup = base / "backup" / "lightningd.sqlite3"
        self.proc: subprocess.Popen[bytes] | None = None
        self._rpc: Any = None
        # free_port() cannot reserve a port: another process may take it before the stand-in
        # binds it (seen under pytest -n 2). Then start again on fresh ports.
        for attempt in range(3):
            self._write_config(chain, zmq, zmq_unset, extra)
            try:
                self.start()
                break
            except RuntimeError as exc:
                if "address already in use" not in str(exc).lower() or attempt == 2:
                    raise

    def _write_config(
        self, chain: ChainHandle, zmq: bool, zmq_unset: tuple[str, ...], extra: tuple[str, ...]
    ) -> None:
        """Pick free ports and write the config file (again, when a port was taken meanwhile)."""
        (self.base / "stdout.log").unlink(missing_ok=True)
        self.rpc_path.unlink(missing_ok=True)
        self.peer_port = free_port()
        self.control_port = free_port()
        self.zmq_endpoints: dict[str, str] = {}
        lines = [
            f"alias={self.alias}",
            "network=regtest",
            f"bind-addr=127.0.0.1:{self.peer_port}",
            f"log-file={self.log_path}",
            "log-level=debug",
            f"wallet=sqlite3://{self.db_main}:{self.db_backup}",
            "dev-bitcoind-poll=0.1",
            f"simnet-control=127.0.0.1:{self.control_port}",
            f"simnet-role={self.role}",
        ]
        lines += [a[2:] for a in chain.args()]
        if zmq:
            lines.append(f"plugin={CLZMQ_PLUGIN}")
            for option in ZMQ_OPTIONS:
                if option in zmq_unset:
                    continue
                endpoint = f"tcp://127.0.0.1:{free_port()}"
                self.zmq_endpoints[option[len("zmq-pub-") :].replace("-", "_")] = endpoint
                lines.append(f"{option}={endpoint}")
        lines += list(extra)
        self.conf = self.base / "config"
        self.conf.write_text("\n".join(lines) + "\n")
        self.args = [f"--conf={self.conf}", f"--lightning-dir={self.lightning_dir}"]

    def start(self) -> None:
        """Start (or restart) the process and wait for the RPC socket."""
        self.stdout = (self.base / "stdout.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simnet.lightning", *self.args],
            stdout=self.stdout,
            stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: self.rpc_path.exists() or self.proc is None or self.proc.poll() is not None,
            60,  # a loaded CI machine takes long to import the stand-in
            "lightning-rpc socket",
        )
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"lightning stand-in exited: {(self.base / 'stdout.log').read_text()}"
            )
        try:
            wait_for(
                lambda: self._control_up() or self.proc is None or self.proc.poll() is not None,
                60,
                "control API",
            )
        except TimeoutError:
            raise TimeoutError(
                f"control API of the lightning stand-in not up: {self.log_tail()}"
            ) from None
        if self.proc.poll() is not None:
            raise RuntimeError(f"lightning stand-in exited: {self.log_tail()}")
        self._rpc = None

    def log_tail(self, lines: int = 30) -> str:
        text = (self.base / "stdout.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _control_up(self) -> bool:
        try:
            self.control("GET", "/v1/status")
            return True
        except OSError:
            return False

    @property
    def rpc(self) -> Any:
        """A pyln-client LightningRpc on the socket."""
        if self._rpc is None:
            from pyln.client import LightningRpc

            self._rpc = LightningRpc(str(self.rpc_path))
        return self._rpc

    @property
    def node_id(self) -> str:
        """The node id (getinfo.id)."""
        return str(self.rpc.getinfo()["id"])

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the control API; raises RuntimeError with the error object on HTTP 400."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.control_port}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback http)
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(json.loads(exc.read())) from exc

    # control helpers ------------------------------------------------------
    def fail_next_payment(self, code: int, **kw: Any) -> None:
        """Make the next pay/xpay/keysend fail with this error code (210 may stay pending)."""
        self.control("POST", "/v1/payments/fail-next", {"code": code, **kw})

    def fail_next_htlc(self, failcode: int) -> None:
        """Fail the next HTLC this node receives with a BOLT4 failcode (e.g. 0x1007)."""
        self.control("POST", "/v1/htlcs/fail-next", {"failcode": failcode})

    def lag_blocks(self, blocks: int) -> None:
        """Keep getinfo.blockheight this many blocks behind the chain tip."""
        self.control("POST", "/v1/chain/lag", {"blocks": blocks})

    def hold(self, height: int | None = None) -> None:
        """Stop following the chain at a height (default: the current one)."""
        self.control("POST", "/v1/chain/hold", {} if height is None else {"height": height})

    def resume(self) -> None:
        """Follow the chain tip again."""
        self.control("POST", "/v1/chain/resume", {})

    def make_outside_invoice(
        self, amount_msat: int | None, description: str = "outside"
    ) -> dict[str, Any]:
        """(hub) An invoice of the outside world behind the hub."""
        return dict(
            self.control(
                "POST",
                "/v1/outside/invoice",
                {"amount_msat": amount_msat, "description": description},
            )
        )

    def pay_from_outside(self, bolt11: str, amount_msat: int | None = None) -> dict[str, Any]:
        """(hub) The outside world pays a node's invoice through the hub."""
        body: dict[str, Any] = {"bolt11": bolt11}
        if amount_msat is not None:
            body["amount_msat"] = amount_msat
        return dict(self.control("POST", "/v1/outside/pay", body))

    def shift_channel_balance(self, amount_msat: int, peer_id: str | None = None) -> dict[str, Any]:
        """Move balance from this node to its channel peer (negative: towards this node)."""
        body: dict[str, Any] = {"amount_msat": amount_msat}
        if peer_id:
            body["peer_id"] = peer_id
        return dict(self.control("POST", "/v1/channel/shift", body))

    def blockheight(self) -> int:
        """getinfo.blockheight."""
        return int(self.rpc.getinfo()["blockheight"])

    def wait_synced(self, timeout: float = 10) -> None:
        """Wait until getinfo.blockheight equals the chain tip."""
        wait_for(lambda: self.blockheight() == self.chain.height(), timeout, "blockheight")

    def log_text(self) -> str:
        """The log file so far."""
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._rpc = None
        self.stdout.close()

    def restart(self) -> None:
        """Stop then start with the same options and state."""
        self.stop()
        self.start()


def open_channel(
    node: LightningNodeHandle,
    hub: LightningNodeHandle,
    amount_sat: int = 5_000_000,
    push_msat: int = 0,
) -> dict[str, Any]:
    """Fund the node on-chain, connect to the hub, open a channel and wait for CHANNELD_NORMAL."""
    chain = node.chain
    addr = node.rpc.newaddr()["bech32"]
    chain.pay(addr, amount_sat + 1_000_000)
    chain.mine(1)
    wait_for(
        lambda: any(o["status"] == "confirmed" for o in node.rpc.listfunds()["outputs"]),
        10,
        "confirmed funds",
    )
    node.rpc.connect(hub.node_id, "127.0.0.1", hub.peer_port)
    result = dict(node.rpc.fundchannel(hub.node_id, amount_sat, push_msat=push_msat))
    chain.mine(1)
    for side in (node, hub):
        wait_for(
            lambda s=side: _normal_channels(s),  # type: ignore[misc]
            10,
            "CHANNELD_NORMAL",
        )
    return result


def _normal_channels(handle: LightningNodeHandle) -> list[dict[str, Any]]:
    channels = handle.rpc.listpeerchannels()["channels"]
    return [c for c in channels if c["state"] == "CHANNELD_NORMAL"]


@pytest.fixture
def ln_chain(tmp_path: Path) -> Iterator[ChainHandle]:
    """A bitcoind (minichain) for Lightning stand-ins."""
    handle = ChainHandle(tmp_path)
    yield handle
    handle.stop()


@pytest.fixture
def ln_dir() -> Iterator[Path]:
    """A short base directory for lightning dirs: the RPC socket path must fit a unix socket
    address (108 bytes), as with the real lightningd, and pytest's tmp_path under xdist
    (``…/popen-gw0/test_name0/…``) does not."""
    path = Path(tempfile.mkdtemp(prefix="ln-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_lightning_node(
    ln_dir: Path, ln_chain: ChainHandle
) -> Iterator[Callable[..., LightningNodeHandle]]:
    """Factory: start_lightning_node(alias="node", role="node", zmq=True, ...) → handle."""
    started: list[LightningNodeHandle] = []

    def start(alias: str = "node", **kw: Any) -> LightningNodeHandle:
        base = ln_dir / alias
        suffix = 1
        while base.exists():  # the same alias twice in one test gets its own directory
            suffix += 1
            base = ln_dir / f"{alias}-{suffix}"
        base.mkdir()
        handle = LightningNodeHandle(base, ln_chain, alias=alias, **kw)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


@pytest.fixture
def lightning_hub(start_lightning_node: Callable[..., LightningNodeHandle]) -> LightningNodeHandle:
    """The simulated SC Cluster hub."""
    return start_lightning_node("hub", role="hub", zmq=False)


@pytest.fixture
def lightning_pair(
    start_lightning_node: Callable[..., LightningNodeHandle],
) -> tuple[LightningNodeHandle, LightningNodeHandle]:
    """(node, hub) with a 5,000,000 sat channel opened by the node, normal on both sides."""
    with ThreadPoolExecutor(2) as pool:  # start both processes side by side
        hub_future = pool.submit(start_lightning_node, "hub", role="hub", zmq=False)
        node_future = pool.submit(start_lightning_node, "node")
        hub, node = hub_future.result(), node_future.result()
    open_channel(node, hub)
    return node, hub
