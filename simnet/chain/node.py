"""One simulated chain node: JSON-RPC over HTTP, ZMQ, the control API, persistence, peers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import ipaddress
import json
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from bitcoin.core import CBlock, CTransaction

from simnet.chain import VERSION_BANNER
from simnet.chain.chainstate import BlockEntry, ChainEvent, ChainState, hexid, unhexid
from simnet.chain.config import ZMQ_TOPICS, ConfigError, Options, validate_rpcauth
from simnet.chain.crypto import AddressError, address_script
from simnet.chain.errors import RPC_IN_WARMUP, RPC_METHOD_NOT_FOUND, RPC_PARSE_ERROR, RPCError
from simnet.chain.jsonwire import dumps, loads
from simnet.chain.methods import METHODS, Ctx, bind_params
from simnet.chain.params import ChainParams, chain_params, release_version
from simnet.chain.wallet import Wallet

FALLBACK_FEE_SAT_VB = 20  # the fixtures' nodes ran with fallbackfee=0.0002


@dataclass
class ControlState:
    """What the control API has set: faults, warm-up, IBD, fee estimate, block timer."""

    warmup: str | None = None
    warmup_until: float | None = None
    ibd: bool | None = None
    fee_estimate: int | None = None  # sat/vB
    fail: list[dict[str, Any]] = field(default_factory=list)
    stall: list[dict[str, Any]] = field(default_factory=list)
    block_interval: float | None = None


class ZmqPublisher:
    """PUB sockets for -zmqpub<topic>=<address>; three frames, per-topic LE counters."""

    def __init__(self, endpoints: list[tuple[str, str, int]]) -> None:
        import zmq

        self.ctx: Any = zmq.Context.instance()
        self.sockets: dict[str, Any] = {}
        self.topics: dict[str, tuple[Any, list[int]]] = {}
        for topic, address, hwm in endpoints:
            sock = self.sockets.get(address)
            if sock is None:
                sock = self.ctx.socket(zmq.PUB)
                sock.setsockopt(zmq.SNDHWM, hwm)
                sock.setsockopt(zmq.LINGER, 0)
                sock.bind(address)
                self.sockets[address] = sock
            self.topics[topic] = (sock, [0])

    def publish(self, topic: str, body: bytes) -> None:
        item = self.topics.get(topic)
        if item is None:
            return
        sock, counter = item
        with contextlib.suppress(Exception):  # a full queue drops, as ZMQ does for Core
            sock.send_multipart([topic.encode(), body, counter[0].to_bytes(4, "little")])
        counter[0] = (counter[0] + 1) & 0xFFFFFFFF

    def on_event(self, ev: ChainEvent) -> None:
        if ev.kind == "tx":
            self.publish("hashtx", ev.txid[::-1])
            self.publish("rawtx", ev.raw)
        elif ev.kind in ("connected", "disconnected") and ev.block is not None:
            self.publish(
                "sequence", ev.block.hash[::-1] + (b"C" if ev.kind == "connected" else b"D")
            )
        elif ev.kind in ("added", "removed"):
            label = b"A" if ev.kind == "added" else b"R"
            self.publish("sequence", ev.txid[::-1] + label + ev.mempool_seq.to_bytes(8, "little"))
        elif ev.kind == "tip" and ev.block is not None:
            self.publish("hashblock", ev.block.hash[::-1])
            self.publish("rawblock", ev.block.raw)

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close(0)


class Node:
    """The daemon. Construct with parsed options, then `await run()`."""

    def __init__(self, options: Options, sim: dict[str, str], argv: list[str]) -> None:
        self.options = options
        self.argv = argv
        self.started = time.time()
        coin = sim.get("coin", "bitcoin")
        self.params: ChainParams = chain_params(
            coin,
            options.network,
            emulate=sim.get("emulate") or None,
            hrp=sim.get("hrp") or None,
            rpc_port=int(sim["coin-rpc-port"]) if sim.get("coin-rpc-port") else None,
            p2p_port=int(sim["coin-p2p-port"]) if sim.get("coin-p2p-port") else None,
            subsidy=int(sim["subsidy-sats"]) if sim.get("subsidy-sats") else None,
            halving_interval=int(sim["halving-interval"]) if sim.get("halving-interval") else None,
        )
        self.datadir = Path(options.get("datadir") or Path.home() / f".{coin}").expanduser()
        if not self.datadir.is_dir():
            raise ConfigError(f'Error: Specified data directory "{self.datadir}" does not exist.')
        self.netdir = self.datadir / self.params.net_dir
        self.netdir.mkdir(parents=True, exist_ok=True)
        walletdir = options.get("walletdir")
        self.walletdir = Path(walletdir) if walletdir else self.netdir / "wallets"
        self.txindex = options.get_bool("txindex", False)
        self.prune_mode = options.get_int("prune", 0)
        if self.prune_mode < 0:
            raise ConfigError("Error: Prune cannot be configured with a negative value.")
        if self.prune_mode not in (0, 1) and self.prune_mode < 550:
            raise ConfigError(
                "Error: Prune configured below the minimum of 550 MiB.  Please use a higher number."
            )
        if self.prune_mode and self.txindex:
            raise ConfigError("Error: Prune mode is incompatible with -txindex.")
        self.rpcauth = validate_rpcauth(options.get_all("rpcauth"))
        self.rpc_user = options.get("rpcuser") or ""
        self.rpc_password = options.get("rpcpassword") or ""
        self.rpc_port = options.get_int("rpcport", self.params.rpc_port)
        self.p2p_port = options.get_int("port", self.params.p2p_port)
        if not self.rpc_port:
            raise ConfigError(
                f"Error: --coin={coin} has no default RPC port; set -rpcport or --coin-rpc-port"
            )
        self.control_port = int(sim.get("control-port") or self.rpc_port + 1000)
        self.control_bind = sim.get("control-bind") or "127.0.0.1"
        self.control = ControlState()
        # calls being executed (stalled ones included): getrpcinfo's active_commands, as Core
        self.active_rpc: dict[int, tuple[str, float]] = {}
        if sim.get("block-interval"):
            self.control.block_interval = float(sim["block-interval"])
        self.fallback_fee_sat_vb = FALLBACK_FEE_SAT_VB
        if options.get("fallbackfee"):
            self.fallback_fee_sat_vb = max(
                1, round(float(options.get("fallbackfee") or 0) * 100_000)
            )
        self.max_mempool_mb = options.get_int("maxmempool", 300)
        self.wallet_disabled = options.get_bool("disablewallet", False)
        self.chain = ChainState(self.params)
        self.wallets: dict[str, Wallet] = {}
        self.world: Wallet | None = None
        self.left_ibd = False
        self.dirty = False
        self.stop_event = asyncio.Event()
        self.zmq_endpoints: list[tuple[str, str, int]] = []
        for topic in ZMQ_TOPICS:
            for address in self.options.get_all(f"zmqpub{topic}"):
                self.zmq_endpoints.append(
                    (topic, address, self.options.get_int(f"zmqpub{topic}hwm", 1000))
                )
        self.zmq: ZmqPublisher | None = None
        self.peers: list[str] = []
        self.inbound: dict[str, float] = {}
        self.cookie_path: Path | None = None
        self.pid_path = self.datadir / (self.options.get("pid") or f"{self.daemon_name}.pid")
        self.log_path = self.netdir / (self.options.get("debuglogfile") or "debug.log")
        self.print_to_console = self.options.get_bool("printtoconsole", False)
        self._runners: list[web.AppRunner] = []
        self._auth_cache: dict[str, str] = {}
        self._allowed_peers: dict[str, bool] = {}
        self._session: aiohttp.ClientSession | None = None

    # --- identity ----------------------------------------------------------------------------

    @property
    def daemon_name(self) -> str:
        return {"bitcoin": "bitcoind", "azcoin": "azcoind"}.get(
            self.params.coin, f"{self.params.coin}d"
        )

    @property
    def version_number(self) -> int:
        return release_version(self.params.coin, self.params.emulate)[1]

    @property
    def subversion(self) -> str:
        ver = release_version(self.params.coin, self.params.emulate)[0]
        return f"/Satoshi:{ver}(simnet SIMULATION)/"

    # --- logging -----------------------------------------------------------------------------

    def log(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}\n"
        with open(self.log_path, "a") as fh:
            fh.write(line)
        if self.print_to_console:
            sys.stdout.write(line)
            sys.stdout.flush()

    # --- files -------------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.netdir / "simnet-chain.json"

    def wallet_path(self, name: str) -> Path:
        return self.walletdir / name if name else self.walletdir

    def mark_dirty(self) -> None:
        self.dirty = True

    def save(self) -> None:
        state = self.chain.snapshot()
        state["loaded_wallets"] = list(self.wallets)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.state_path)
        for w in self.wallets.values():
            w.save()
        if self.world is not None:
            self.world.save()
        self.dirty = False

    def save_if_dirty(self) -> None:
        if self.dirty:
            self.save()

    def backup_wallet(self, wallet: Wallet, destination: str) -> None:
        dest = Path(destination)
        if not dest.is_absolute():
            dest = Path.cwd() / dest
        if dest.is_dir():
            dest = dest / f"{wallet.name or 'wallet'}.dat"
        try:
            dest.write_text(json.dumps(wallet.to_json()))
        except OSError as exc:
            raise RPCError(-4, "Wallet backup failed!") from exc

    def read_backup(self, source: str) -> dict[str, Any]:
        path = Path(source)
        if not path.exists():
            raise RPCError(-8, "Backup file does not exist")
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RPCError(
                -4, "Wallet file verification failed. Failed to restore wallet backup."
            ) from exc
        return data

    def attach_wallet(self, wallet: Wallet) -> None:
        self.wallets[wallet.name] = wallet
        self.chain.listeners.append(wallet.on_event)
        wallet.save()
        self.mark_dirty()

    def detach_wallet(self, name: str) -> None:
        wallet = self.wallets.pop(name)
        wallet.save()
        self.chain.listeners.remove(wallet.on_event)
        self.mark_dirty()

    # --- start-up ----------------------------------------------------------------------------

    def load_state(self) -> None:
        loaded: list[str] = []
        if self.state_path.exists():
            data = json.loads(self.state_path.read_text())
            self.chain.restore(data)
            loaded = list(data.get("loaded_wallets", []))
        self.control.warmup = "Loading wallet…"
        for name in [*self.options.get_all("wallet"), *loaded]:
            if name in self.wallets:
                continue
            path = self.wallet_path(name)
            if (path / "wallet.dat").exists():
                wallet = Wallet.load(name, path, self.chain)
            elif name in self.options.get_all("wallet"):
                wallet = Wallet.create(name, path, self.chain)
            else:
                continue
            self.wallets[name] = wallet
            self.chain.listeners.append(wallet.on_event)
        world_path = self.netdir / "simnet-world"
        if (world_path / "wallet.dat").exists():
            self.world = Wallet.load("__world__", world_path, self.chain)
        else:
            self.world = Wallet.create("__world__", world_path, self.chain)
        self.chain.listeners.append(self.world.on_event)
        self.chain.listeners.append(lambda _ev: self.mark_dirty())

    def write_cookie(self) -> None:
        if self.rpc_password:
            return
        cookie = self.options.get("rpccookiefile")
        path = Path(cookie) if cookie else self.netdir / ".cookie"
        if not path.is_absolute():
            path = self.netdir / path
        self.cookie_secret = secrets.token_hex(32)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"__cookie__:{self.cookie_secret}")
        tmp.chmod(0o600)
        tmp.replace(path)
        self.cookie_path = path

    async def run(self) -> int:
        t0 = time.time()
        print(
            VERSION_BANNER.format(
                name=self.daemon_name, coin=self.params.coin, network=self.params.network
            ),
            flush=True,
        )
        release = release_version(self.params.coin, self.params.emulate)[0]
        self.log(
            f"{self.daemon_name} version v{release} (simnet "
            f"SIMULATION of {self.params.coin} {self.params.network})"
        )
        for warning in self.options.warnings:
            self.log(warning)
        for name, values in {
            **self.options.file.get("", {}),
            **self.options.file.get(self.options.network, {}),
            **self.options.cli,
        }.items():
            from simnet.chain.config import ACCEPTED

            if name in ACCEPTED:
                self.log(f"simnet: option -{name}={values[-1]} accepted, not simulated")
        if self.options.get_bool("daemon", False):
            self.log("simnet: -daemon=1 is not simulated; running in the foreground")
        self.pid_path.write_text(f"{os.getpid()}\n")
        # As bitcoind: the RPC port answers -28 while the block index and wallets load.
        self.control.warmup = "Loading block index…"
        if self.options.get_bool("server", True):
            await self._start_rpc()
        await asyncio.to_thread(self.load_state)
        self.control.warmup = None
        if self.zmq_endpoints:
            self.zmq = ZmqPublisher(self.zmq_endpoints)
            self.chain.listeners.append(self.zmq.on_event)
        await self._start_control()
        # Core's default: listen, unless -connect names the peers.
        if not self.p2p_port:
            self.log("simnet: no P2P port (-port or --coin-p2p-port): not listening")
        elif self.options.get_bool("listen", not self.options.get_all("connect")):
            await self._start_p2p()
        self.peers = self._peer_list()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        tasks = [asyncio.create_task(self._block_timer()), asyncio.create_task(self._sync_peers())]
        self.log(
            f"simnet: ready in {time.time() - t0:.3f}s: height {self.chain.height}, rpc "
            f"{self.rpc_port}, control {self.control_port}, p2p {self.p2p_port}"
        )
        await self.stop_event.wait()
        for task in tasks:
            task.cancel()
        await self.shutdown()
        return 0

    def _peer_list(self) -> list[str]:
        connect = self.options.get_all("connect")
        peers = (
            [p for p in connect if p not in ("0", "")]
            if connect
            else [*self.options.get_all("addnode"), *self.options.get_all("seednode")]
        )
        out = []
        for p in peers:
            host, _, port = p.rpartition(":") if ":" in p else (p, "", "")
            out.append(f"{host or p}:{port or self.params.p2p_port}")
        return out

    async def shutdown(self) -> None:
        self.log("Shutdown: In progress...")
        self.save()
        if self._session is not None:
            await self._session.close()
        for runner in self._runners:
            await runner.cleanup()
        if self.zmq is not None:
            self.zmq.close()
        if self.cookie_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.cookie_path.unlink()
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()
        self.log("Shutdown: done")

    def request_stop(self) -> None:
        asyncio.get_running_loop().call_soon(self.stop_event.set)

    # --- RPC server --------------------------------------------------------------------------

    def _rpc_binds(self) -> list[str]:
        allow = self.options.get_all("rpcallowip")
        binds = self.options.get_all("rpcbind")
        if binds and not allow:
            self.log(
                "WARNING: option -rpcbind was ignored because -rpcallowip was not specified, "
                "refusing to allow everyone to connect"
            )
            binds = []
        return [b.rsplit(":", 1)[0] if b.count(":") == 1 else b for b in binds] or ["127.0.0.1"]

    async def _start_rpc(self) -> None:
        self.write_cookie()
        self.allow_nets = [
            ipaddress.ip_network(a, strict=False) for a in self.options.get_all("rpcallowip") if a
        ]
        self.whitelist: dict[str, set[str]] = {}
        for entry in self.options.get_all("rpcwhitelist"):
            user, _, methods = entry.partition(":")
            allowed = {m.strip() for m in methods.split(",") if m.strip()}
            self.whitelist[user] = (
                self.whitelist[user] & allowed if user in self.whitelist else allowed
            )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._http_rpc)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        for host in self._rpc_binds():
            await web.TCPSite(runner, host, self.rpc_port, reuse_address=True).start()
        self._runners.append(runner)

    def _check_auth(self, header: str | None) -> str | None:
        """The authenticated user name, or None (good headers are remembered: keep-alive
        clients send the same one on every call)."""
        if not header or not header.startswith("Basic "):
            return None
        known = self._auth_cache.get(header)
        if known is not None:
            return known
        user = self._verify_auth(header)
        if user is not None and len(self._auth_cache) < 1000:
            self._auth_cache[header] = user
        return user

    def _verify_auth(self, header: str) -> str | None:
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        if (
            self.cookie_path is not None
            and user == "__cookie__"
            and hmac.compare_digest(password, self.cookie_secret)
        ):
            return user
        if (
            self.rpc_password
            and user == self.rpc_user
            and hmac.compare_digest(password, self.rpc_password)
        ):
            return user
        for name, salt, digest in self.rpcauth:
            if user == name:
                mine = hmac.new(salt.encode(), password.encode(), "sha256").hexdigest()
                if hmac.compare_digest(mine, digest):
                    return user
        return None

    async def _http_rpc(self, request: web.Request) -> web.StreamResponse:
        html = "text/html; charset=ISO-8859-1"
        peer = request.remote or "127.0.0.1"
        allowed = self._allowed_peers.get(peer)
        if allowed is None:
            try:
                addr = ipaddress.ip_address(peer)
                allowed = addr.is_loopback or any(addr in net for net in self.allow_nets)
            except ValueError:
                allowed = True
            self._allowed_peers[peer] = allowed
        if not allowed:
            return web.Response(
                status=403, body=b"", content_type="text/html", charset="ISO-8859-1"
            )
        if request.method != "POST":
            return web.Response(
                status=405,
                body=b"JSONRPC server handles only POST requests",
                headers={"Content-Type": html},
            )
        path = request.raw_path.split("?", 1)[0]
        wallet_name: str | None = None
        if path.startswith("/wallet/"):
            wallet_name = unquote(path[len("/wallet/") :])
        elif path not in ("/", ""):
            return web.Response(status=404, body=b"", headers={"Content-Type": html})
        header = request.headers.get("Authorization")
        user = self._check_auth(header)
        if user is None:
            if header:
                await asyncio.sleep(0.25)
            self.log(f"ThreadRPCServer incorrect password attempt from {peer}")
            return web.Response(
                status=401,
                body=b"",
                headers={"WWW-Authenticate": 'Basic realm="jsonrpc"', "Content-Type": html},
            )
        body = await request.read()
        try:
            payload = loads(body)
        except ValueError:
            return self._json(
                500,
                {
                    "result": None,
                    "error": {"code": RPC_PARSE_ERROR, "message": "Parse error"},
                    "id": None,
                },
            )
        if isinstance(payload, list):
            replies = []
            for item in payload:
                status, reply = await self._one(item, wallet_name, user)
                if reply is not None:
                    replies.append(reply)
            return self._json(200, replies)
        if not isinstance(payload, dict):
            return self._json(
                400,
                {
                    "result": None,
                    "error": {"code": -32600, "message": "Top-level object parse error"},
                    "id": None,
                },
            )
        status, reply = await self._one(payload, wallet_name, user)
        if reply is None:
            return web.Response(status=204)
        if status == 403:
            return web.Response(status=403, body=b"", headers={"Content-Type": html})
        return self._json(status, reply)

    def _json(self, status: int, value: Any) -> web.Response:
        return web.Response(
            status=status,
            body=(dumps(value) + "\n").encode(),
            headers={"Content-Type": "application/json"},
        )

    async def _one(
        self, req: Any, wallet_name: str | None, user: str
    ) -> tuple[int, dict[str, Any] | None]:
        """Handle one request object; return (HTTP status, reply or None for a notification)."""
        v2 = self.params.v30 and isinstance(req, dict) and req.get("jsonrpc") == "2.0"
        req_id = req.get("id") if isinstance(req, dict) else None

        def reply_error(code: int, message: str) -> tuple[int, dict[str, Any] | None]:
            if v2:
                if isinstance(req, dict) and "id" not in req:
                    return 204, None
                return 200, {
                    "jsonrpc": "2.0",
                    "error": {"code": code, "message": message},
                    "id": req_id,
                }
            status = 400 if code == -32600 else 404 if code == RPC_METHOD_NOT_FOUND else 500
            return status, {
                "result": None,
                "error": {"code": code, "message": message},
                "id": req_id,
            }

        if not isinstance(req, dict):
            return reply_error(-32600, "Invalid Request object")
        if self.params.v30 and "jsonrpc" in req and req["jsonrpc"] not in ("1.0", "1.1", "2.0"):
            return reply_error(-32600, "JSON-RPC version not supported")
        method_name = req.get("method")
        if not isinstance(method_name, str):
            return reply_error(-32600, "Method must be a string")
        # As Core: whitelists are checked before the call runs (and before warm-up);
        # -rpcwhitelistdefault defaults to on as soon as any -rpcwhitelist is set.
        if user in self.whitelist and method_name not in self.whitelist[user]:
            self.log(f"RPC User {user} not allowed to call method {method_name}")
            return 403, {}
        if user not in self.whitelist and self.options.get_bool(
            "rpcwhitelistdefault", bool(self.whitelist)
        ):
            return 403, {}
        warm = self._warmup_message()
        if warm is not None:
            return reply_error(RPC_IN_WARMUP, warm)
        fault = self._take_fault(method_name)
        if fault is not None:
            return reply_error(
                int(fault.get("code", -1)), str(fault.get("message", "simulated failure"))
            )
        token = object()
        self.active_rpc[id(token)] = (method_name, time.monotonic())
        try:
            stall = self._take(self.control.stall, method_name)
            if stall is not None:
                await asyncio.sleep(float(stall.get("seconds", 5)))
            method = METHODS.get(method_name)
            if method is None or (method.category == "wallet" and self.wallet_disabled):
                return reply_error(RPC_METHOD_NOT_FOUND, "Method not found")
            try:
                args = bind_params(method, req.get("params"), self)
                result = method.fn(Ctx(self, wallet_name), *args)
            except RPCError as err:
                self.save_if_dirty()
                return reply_error(err.code, err.message)
            except Exception as exc:  # a bug must still answer like bitcoind, and be logged
                self.log(f"simnet: internal error in {method_name}: {exc!r}")
                return reply_error(-1, f"simnet internal error: {exc}")
        finally:
            del self.active_rpc[id(token)]
        self.save_if_dirty()
        if v2:
            if "id" not in req:
                return 204, None
            return 200, {"jsonrpc": "2.0", "result": result, "id": req_id}
        return 200, {"result": result, "error": None, "id": req_id}

    def _warmup_message(self) -> str | None:
        if self.control.warmup is None:
            return None
        if self.control.warmup_until is not None and time.time() >= self.control.warmup_until:
            self.control.warmup = None
            self.control.warmup_until = None
            return None
        return self.control.warmup

    @staticmethod
    def _take(queue: list[dict[str, Any]], method: str) -> dict[str, Any] | None:
        for item in queue:
            if item.get("method") in (None, method):
                item["count"] = int(item.get("count", 1)) - 1
                if item["count"] <= 0:
                    queue.remove(item)
                return item
        return None

    def _take_fault(self, method: str) -> dict[str, Any] | None:
        return self._take(self.control.fail, method)

    # --- mining and relay --------------------------------------------------------------------

    def world_script(self) -> bytes:
        assert self.world is not None
        address = self.world.new_address("world")
        return address_script(
            address, self.params.hrp, self.params.p2pkh_version, self.params.p2sh_version
        )

    def mine_block(
        self,
        script: bytes,
        txs: list[CTransaction] | None = None,
        payouts: list[tuple[bytes, int]] | None = None,
    ) -> BlockEntry:
        entry = self.chain.mine(script, txs, nonce_tag=os.urandom(4), payouts=payouts)
        self.mark_dirty()
        self.relay_block(entry)
        return entry

    def relay_block(self, entry: BlockEntry) -> None:
        if self.peers:
            asyncio.get_running_loop().create_task(self._push_all("block", entry.raw.hex()))

    def relay_tx(self, tx: CTransaction) -> None:
        if self.peers:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().create_task(self._push_all("tx", tx.serialize().hex()))

    def peer_count(self) -> int:
        now = time.time()
        return len(self.peers) + sum(1 for t in self.inbound.values() if now - t < 10)

    def peer_addresses(self) -> list[str]:
        now = time.time()
        return self.peers + [p for p, t in self.inbound.items() if now - t < 10]

    async def _block_timer(self) -> None:
        while True:
            interval = self.control.block_interval
            await asyncio.sleep(interval if interval else 0.5)
            if interval and self.control.block_interval:
                try:
                    self.mine_block(self.world_script())
                except RPCError as err:  # keep the timer alive; the log says why a block failed
                    self.log(f"simnet: timer block not mined: {err.message}")
                self.save_if_dirty()

    # --- P2P (the simulated network: a small HTTP sync protocol of real serialized blocks) -----

    async def _start_p2p(self) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/simnet/p2p/tip", self._p2p_tip)
        app.router.add_get("/simnet/p2p/blocks", self._p2p_blocks)
        app.router.add_get("/simnet/p2p/mempool", self._p2p_mempool)
        app.router.add_post("/simnet/p2p/block", self._p2p_block)
        app.router.add_post("/simnet/p2p/tx", self._p2p_tx)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        # Core listens on every interface by default; the lab's peers are on other hosts.
        binds = self.options.get_all("bind") or ["0.0.0.0"]  # noqa: S104
        for b in binds:
            host = b.split("=")[0]
            host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
            await web.TCPSite(runner, host, self.p2p_port, reuse_address=True).start()
        self._runners.append(runner)

    def _seen(self, request: web.Request) -> None:
        peer = request.headers.get("X-Simnet-Node")
        if peer:
            self.inbound[peer] = time.time()

    async def _p2p_tip(self, request: web.Request) -> web.Response:
        self._seen(request)
        tip = self.chain.tip
        return web.json_response(
            {
                "height": tip.height,
                "hash": tip.hex_hash,
                "chainwork": f"{tip.chainwork:x}",
                "genesis": self.chain.active[0][::-1].hex(),
            }
        )

    async def _p2p_blocks(self, request: web.Request) -> web.Response:
        self._seen(request)
        locator = [unhexid(h) for h in request.query.get("locator", "").split(",") if h]
        start = 0
        for h in locator:
            entry = self.chain.index.get(h)
            if entry is not None and self.chain.in_active(entry):
                start = entry.height + 1
                break
        hashes = self.chain.active[start : start + 500]
        return web.json_response({"blocks": [self.chain.index[h].raw.hex() for h in hashes]})

    async def _p2p_mempool(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.json_response({"txs": [m.raw.hex() for m in self.chain.mempool.values()]})

    async def _p2p_block(self, request: web.Request) -> web.Response:
        self._seen(request)
        data = await request.json()
        try:
            self.chain.submit_block(CBlock.deserialize(bytes.fromhex(data["hex"])))
        except RPCError as err:
            return web.json_response({"accepted": False, "reason": err.message})
        self.save_if_dirty()
        return web.json_response({"accepted": True})

    async def _p2p_tx(self, request: web.Request) -> web.Response:
        self._seen(request)
        data = await request.json()
        try:
            self.chain.accept_tx(CTransaction.deserialize(bytes.fromhex(data["hex"])))
        except RPCError as err:
            return web.json_response({"accepted": False, "reason": err.message})
        self.save_if_dirty()
        return web.json_response({"accepted": True})

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=10),
                headers={"X-Simnet-Node": f"{self.params.coin}:{self.p2p_port}"},
            )
        return self._session

    async def _push_all(self, kind: str, hex_data: str) -> None:
        for peer in self.peers:
            with contextlib.suppress(Exception):
                async with self._http().post(
                    f"http://{peer}/simnet/p2p/{kind}", json={"hex": hex_data}
                ) as resp:
                    await resp.read()

    def _locator(self) -> str:
        heights = []
        h, step = self.chain.height, 1
        while h > 0:
            heights.append(h)
            if len(heights) > 10:
                step *= 2
            h -= step
        heights.append(0)
        return ",".join(self.chain.active[x][::-1].hex() for x in heights)

    async def _sync_peers(self) -> None:
        while True:
            await asyncio.sleep(0.3 if self.peers else 1.0)
            for peer in self.peers:
                with contextlib.suppress(Exception):
                    await self._sync_one(peer)
            self.save_if_dirty()

    async def _sync_one(self, peer: str) -> None:
        session = self._http()
        async with session.get(f"http://{peer}/simnet/p2p/tip") as resp:
            tip = await resp.json()
        if tip["genesis"] != self.chain.active[0][::-1].hex():
            return
        if int(tip["chainwork"], 16) > self.chain.tip.chainwork:
            while True:
                async with session.get(
                    f"http://{peer}/simnet/p2p/blocks", params={"locator": self._locator()}
                ) as resp:
                    blocks = (await resp.json())["blocks"]
                if not blocks:
                    break
                for raw in blocks:
                    self.chain.add_block(CBlock.deserialize(bytes.fromhex(raw)))
                self.chain.activate_best_chain()
                if int(tip["chainwork"], 16) <= self.chain.tip.chainwork or len(blocks) < 500:
                    break
        async with session.get(f"http://{peer}/simnet/p2p/mempool") as resp:
            txs = (await resp.json())["txs"]
        for raw in txs:
            tx = CTransaction.deserialize(bytes.fromhex(raw))
            if bytes(tx.GetTxid()) not in self.chain.mempool:
                with contextlib.suppress(RPCError):
                    self.chain.accept_tx(tx)

    # --- control API -------------------------------------------------------------------------

    async def _start_control(self) -> None:
        from simnet.chain.control import control_routes

        app = web.Application()
        control_routes(app, self)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, self.control_bind, self.control_port, reuse_address=True).start()
        self._runners.append(runner)

    def script_for(self, address: str | None) -> bytes:
        if not address:
            return self.world_script()
        try:
            return address_script(
                address, self.params.hrp, self.params.p2pkh_version, self.params.p2sh_version
            )
        except AddressError as exc:
            raise RPCError(-5, f"Invalid address: {address}") from exc


def restart_argv(node: Node) -> list[str]:
    return [sys.executable, "-m", "simnet.chain", *node.argv]


def hexids(entries: list[BlockEntry]) -> list[str]:
    return [e.hex_hash for e in entries]


__all__ = ["Node", "hexid", "hexids", "restart_argv"]
