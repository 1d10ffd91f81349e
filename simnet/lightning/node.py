"""The lightningd stand-in: state, chain following, peers, payments and the JSON-RPC methods."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import struct
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from bitcoin.core import CBlock, CMutableTransaction, CTransaction, b2lx
from bitcoin.core.key import CPubKey

from simnet.lightning import bolt11, wallet
from simnet.lightning.bitcoind import BitcoindClient, BitcoindError
from simnet.lightning.clzmq import ZmqPublisher
from simnet.lightning.options import Options
from simnet.lightning.peer import PeerError, PeerLink
from simnet.lightning.store import Store, parse_wallet_option

VERSION = "v26.06.6"
FEATURES_INIT = "800898880a8a59a1"
FEATURES_NODE = "808898880a8a59a1"
CHANNEL_TYPE = {"bits": [12, 22], "names": ["static_remotekey/even", "anchors/even"]}
FEE_BASE_MSAT = 1
FEE_PPM = 10
COMMIT_FEE_MSAT = 4291000
CLOSE_FEE_SAT = 196
OPEN_FEE_SAT = 177
WITHDRAW_FEE_SAT = 266
HTLC_MAX_MSAT = 990000000
WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS = 16399
WIRE_UNKNOWN_NEXT_PEER = 16394
WIRE_TEMPORARY_CHANNEL_FAILURE = 4103
WIRE_MPP_TIMEOUT = 23
FAILCODE_NAMES = {
    0x400F: "WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS",
    0x2002: "WIRE_TEMPORARY_NODE_FAILURE",
    0x4002: "WIRE_PERMANENT_NODE_FAILURE",
    0x1007: "WIRE_TEMPORARY_CHANNEL_FAILURE",
    0x400A: "WIRE_UNKNOWN_NEXT_PEER",
    0x100C: "WIRE_FEE_INSUFFICIENT",
    WIRE_MPP_TIMEOUT: "WIRE_MPP_TIMEOUT",
}
LOG_LEVELS = {"IO": 0, "DEBUG": 1, "INFO": 2, "UNUSUAL": 3, "BROKEN": 4}


class RpcError(Exception):
    """A JSON-RPC error; `extra` fields sit flat in the error object, like lightningd's."""

    def __init__(self, code: int, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra or {}

    def to_json(self) -> dict[str, Any]:
        """The error object."""
        return {"code": self.code, "message": self.message, **self.extra}


def now_iso() -> str:
    """lightningd's timestamp format (ms, Z)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def fee_for(amount_msat: int) -> int:
    """Routing fee a hop charges (1 msat base + 10 ppm, lightningd's defaults)."""
    return FEE_BASE_MSAT + amount_msat * FEE_PPM // 1_000_000


def valid_node_id(text: Any) -> bool:
    """A 33-byte compressed point that is on the curve."""
    if not isinstance(text, str) or len(text) != 66:
        return False
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return False
    return raw[0] in (2, 3) and bool(CPubKey(raw).is_fullyvalid)


class Node:
    """One simulated lightningd process."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.network = opts.network
        if self.network not in bolt11.CURRENCY:
            raise SystemExit(f"lightningd: Unknown network {self.network}")
        self.currency = bolt11.CURRENCY[self.network]
        self.dir = opts.network_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.role = opts.get("simnet-role", "node") or "node"
        # lightningd works inside <lightning-dir>/<network>: relative paths are relative to it
        self._log_files = [self.dir / p for p in opts.multi.get("log-file", []) if p != "-"]
        level = (opts.get("log-level", "info") or "info").split(":")[0].upper()
        self.log_level = LOG_LEVELS.get(level, 2)
        self.zmq: ZmqPublisher | None = None
        self.hsm_secret = self._load_hsm_secret()
        self.key = wallet.node_key(self.hsm_secret)
        self.node_id = bytes(self.key.pub).hex()
        self.alias = opts.get("alias") or f"SIMNET-{self.node_id[:8]}"
        self.color = opts.get("rgb") or self.node_id[2:8]
        main, backup = parse_wallet_option(opts.get("wallet"), self.dir)
        self.store = Store(main, backup)
        stored_id = self.store.get_var("node_id")
        if stored_id is not None and stored_id != self.node_id:
            raise SystemExit(
                f"lightningd: Wallet node_id {stored_id} does not match HSM {self.node_id}"
            )
        self.store.set_var("node_id", self.node_id)
        self.invoices: dict[str, dict[str, Any]] = {
            str(i["label"]): i for i in self.store.all("invoice")
        }
        self.sendpays: list[dict[str, Any]] = self.store.all("sendpay")
        self.channels: dict[str, dict[str, Any]] = {
            c["channel_id"]: c for c in self.store.all("channel")
        }
        self.forwards: list[dict[str, Any]] = self.store.all("forward")
        self.utxos: dict[str, dict[str, Any]] = {
            f"{u['txid']}:{u['output']}": u for u in self.store.all("utxo")
        }
        self.addresses: dict[str, dict[str, Any]] = {
            a["script"]: a for a in self.store.all("address")
        }
        self.known_peers: dict[str, dict[str, Any]] = {p["id"]: p for p in self.store.all("peer")}
        self.peers: dict[str, PeerLink] = {}
        self.blockheight = int(self.store.get_var("blockheight") or -1)
        self.invoice_changed = asyncio.Condition()
        self.chain = BitcoindClient(
            self.network,
            opts.get("bitcoin-rpcconnect"),
            opts.get("bitcoin-rpcport"),
            opts.get("bitcoin-rpcuser"),
            opts.get("bitcoin-rpcpassword"),
            opts.get("bitcoin-datadir"),
        )
        self.poll_interval = float(opts.get("dev-bitcoind-poll") or 1)
        self.lag_blocks = 0
        self.hold_height: int | None = None
        self.chain_trouble = ""
        self.chain_tip = -1
        self.fail_next: dict[str, Any] | None = None
        self.fail_next_htlc: int | None = None
        self.pending_out: dict[str, int] = {}  # msat of our HTLCs in flight, per channel
        self.xpay_handle_pay = opts.flag("xpay-handle-pay", True)
        self.min_depth = 1 if self.network == "regtest" else 3
        self.stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.outside: Any = None  # the hub's simulated outside world (simnet.lightning.hub)
        self.listen: list[tuple[str, int]] = []

    # ------------------------------------------------------------------ basics
    def _load_hsm_secret(self) -> bytes:
        path = self.dir / "hsm_secret"
        if path.exists():
            if path.stat().st_mode & 0o077:
                raise SystemExit(
                    f"lightningd: {path} has permissions {oct(path.stat().st_mode & 0o777)}, "
                    "must be 0400 or 0600"
                )
            data = path.read_bytes()
            if len(data) != 32:
                raise SystemExit(f"lightningd: {path} is not a 32-byte hsm_secret (simulation)")
            return data
        secret = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as f:
            f.write(secret)
        return secret

    def log(self, level: str, source: str, message: str) -> None:
        """Write a log line in lightningd's format; UNUSUAL/BROKEN also go out as `warning`."""
        if LOG_LEVELS.get(level, 2) < self.log_level:
            return
        stamp = now_iso()
        tag = "**BROKEN**" if level == "BROKEN" else level
        line = f"{stamp} {tag:<7} {source}: {message}"
        if self._log_files:
            for path in self._log_files:
                with path.open("a") as f:
                    f.write(line + "\n")
        else:
            print(line, flush=True)
        if level in ("UNUSUAL", "BROKEN") and self.zmq is not None:
            self.zmq.publish(
                "warning",
                {
                    "level": "warn" if level == "UNUSUAL" else "error",
                    "time": f"{time.time():.9f}",
                    "timestamp": stamp,
                    "source": source,
                    "log": message,
                },
            )

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run a background task owned by the node."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _next_var(self, name: str) -> int:
        value = int(self.store.get_var(name) or 0) + 1
        self.store.set_var(name, value)
        return value

    def publish(self, topic: str, body: dict[str, Any]) -> None:
        """A cl-zmq notification (if the plugin is loaded and bound)."""
        if self.zmq is not None:
            self.zmq.publish(topic, body)

    # ------------------------------------------------------------------ start/stop
    async def start(self) -> None:
        """Bind the peer port, start following the chain, reconnect to channel peers."""
        self.zmq = ZmqPublisher(self.opts, self.log)
        for item in self.opts.unknown:
            self.log("UNUSUAL", "lightningd", f"Unknown option {item}: ignored by the SIMULATION")
        for item in self.opts.not_simulated:
            self.log("INFO", "lightningd", f"Option {item} accepted, not simulated")
        for plugin in self.opts.plugins:
            self.log("INFO", "plugin-manager", f"plugin {plugin} loaded (simulated)")
        for addr in self.opts.multi.get("bind-addr", []) + self.opts.multi.get("addr", []):
            host, _, port = addr.rpartition(":")
            server = await asyncio.start_server(self._accept_peer, host or "127.0.0.1", int(port))
            sock = server.sockets[0].getsockname()
            self.listen.append((sock[0], sock[1]))
        await self._first_sync()
        self.spawn(self._follow_chain())
        for peer in self.known_peers.values():
            if peer.get("host") and any(c["peer_id"] == peer["id"] for c in self.channels.values()):
                self.spawn(self._reconnect(peer))
        self.log(
            "INFO",
            "lightningd",
            f"Server started with public key {self.node_id}, alias "
            f"{self.alias} (color #{self.color}) and lightningd {VERSION} (SIMULATION)",
        )

    async def _first_sync(self) -> None:
        while not self.stopping.is_set():
            try:
                tip = int(await self.chain.call("getblockcount"))
                break
            except (TimeoutError, OSError, BitcoindError) as exc:
                self.log(
                    "UNUSUAL",
                    "plugin-bcli",
                    f"Could not connect to bitcoind using "
                    f"bitcoin-cli. Is bitcoind running? ({exc})",
                )
                await asyncio.sleep(min(self.poll_interval, 1))
        else:
            return
        if self.blockheight < 0:
            self.blockheight = tip
            self.store.set_var("blockheight", tip)

    async def stop(self) -> None:
        """Close peers, sockets and the database."""
        self.log("UNUSUAL", "lightningd", "JSON-RPC shutdown")
        self.stopping.set()
        for link in list(self.peers.values()):
            link.close()
        for task in list(self._tasks):
            task.cancel()
        await self.chain.close()
        if self.zmq is not None:
            await asyncio.sleep(0.05)
            self.zmq.close()
        self.store.close()

    # ------------------------------------------------------------------ chain following
    async def _follow_chain(self) -> None:
        while not self.stopping.is_set():
            try:
                await self._catch_up()
            except (TimeoutError, OSError) as exc:
                self.log("UNUSUAL", "plugin-bcli", f"bitcoin-cli getblockcount failed: {exc}")
            except BitcoindError as exc:
                self.log("UNUSUAL", "plugin-bcli", f"bitcoind error {exc}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.poll_interval)

    async def _catch_up(self) -> None:
        tip = int(await self.chain.call("getblockcount"))
        self.chain_tip = tip
        target = tip - self.lag_blocks
        if self.hold_height is not None:
            target = min(target, self.hold_height)
        while self.blockheight < target and not self.stopping.is_set():
            height = self.blockheight + 1
            block_hash = await self.chain.call("getblockhash", height)
            try:
                raw = await self.chain.call("getblock", block_hash, 0)
            except BitcoindError as exc:
                trouble = f"getblock {block_hash} 0 at height {height}: {exc.message}"
                if trouble != self.chain_trouble:
                    # lightningd (bcli) cannot get past a block bitcoind pruned: stuck for good
                    self.log(
                        "UNUSUAL",
                        "plugin-bcli",
                        f"bitcoin-cli -regtest {trouble} "
                        "(lightningd cannot continue until the block is available)",
                    )
                self.chain_trouble = trouble
                return
            self.chain_trouble = ""
            self._process_block(height, CBlock.deserialize(bytes.fromhex(raw)))

    def _process_block(self, height: int, block: CBlock) -> None:
        tip_hash = self.store.get_var("tip_hash")
        if tip_hash is not None and b2lx(block.hashPrevBlock) != tip_hash:
            # lightningd would roll back and rescan; the simulation only says so (README)
            self.log(
                "UNUSUAL",
                "lightningd",
                f"Reorg detected below height {height}: not rolled back (SIMULATION)",
            )
        with self.store.txn():
            self.store.set_var("tip_hash", b2lx(block.GetHash()))
            for index, tx in enumerate(block.vtx):
                self._process_tx(height, index, tx)
            self.blockheight = height
            self.store.set_var("blockheight", height)
            for ch in self.channels.values():
                self._check_lockin(ch)

    def _process_tx(self, height: int, index: int, tx: CTransaction) -> None:
        txid = b2lx(tx.GetTxid())
        for txin in tx.vin:
            key = f"{b2lx(txin.prevout.hash)}:{txin.prevout.n}"
            if key in self.utxos:
                utxo = self.utxos.pop(key)
                self.store.delete("utxo", key)
                self.log("DEBUG", "wallet", f"output {key} of {utxo['amount_msat']}msat spent")
        for vout, out in enumerate(tx.vout):
            script = bytes(out.scriptPubKey).hex()
            if script in self.addresses:
                self._add_utxo(txid, vout, out.nValue, script, "confirmed", height)
        for ch in self.channels.values():
            if ch["funding_txid"] == txid and "funding_height" not in ch:
                ch["funding_height"] = height
                ch["short_channel_id"] = f"{height}x{index}x{ch['funding_outnum']}"
                self._save_channel(ch)
            if ch.get("close_txid") == txid and ch["state"] != "ONCHAIN":
                self._set_state(ch, "ONCHAIN", "onchain", "Funding transaction spent")

    def _add_utxo(
        self, txid: str, vout: int, sats: int, script: str, status: str, height: int | None
    ) -> None:
        key = f"{txid}:{vout}"
        utxo = self.utxos.get(key) or {
            "txid": txid,
            "output": vout,
            "amount_msat": sats * 1000,
            "scriptpubkey": script,
            "address": self.addresses[script]["address"],
            "status": status,
            "reserved": False,
        }
        utxo["status"] = status
        if height is not None:
            utxo["blockheight"] = height
        self.utxos[key] = utxo
        self.store.put("utxo", key, utxo)

    def _check_lockin(self, ch: dict[str, Any]) -> None:
        if ch["state"] != "CHANNELD_AWAITING_LOCKIN" or "funding_height" not in ch:
            return
        if self.blockheight - ch["funding_height"] + 1 >= self.min_depth:
            self._set_state(
                ch,
                "CHANNELD_NORMAL",
                "user" if ch["opener"] == "local" else "remote",
                "Lockin complete",
            )

    def _set_state(self, ch: dict[str, Any], state: str, cause: str, message: str) -> None:
        ch["state_changes"].append(
            {
                "timestamp": now_iso(),
                "old_state": ch["state"],
                "new_state": state,
                "cause": cause,
                "message": message,
            }
        )
        ch["state"] = state
        self._save_channel(ch)
        self.log("INFO", f"{ch['peer_id']}-chan#{ch['dbid']}", f"State changed to {state}")

    def _save_channel(self, ch: dict[str, Any]) -> None:
        self.store.put("channel", ch["channel_id"], ch)

    # ------------------------------------------------------------------ wallet
    def new_address(self) -> dict[str, Any]:
        """A fresh wallet key with its P2WPKH and P2TR scripts registered."""
        index = self._next_var("wallet_index")
        pub = bytes(wallet.derive_key(self.hsm_secret, "wallet", index).pub)
        entries = {}
        for kind, script in (
            ("bech32", wallet.p2wpkh_script(pub)),
            ("p2tr", wallet.p2tr_script(pub)),
        ):
            entry = {
                "script": script.hex(),
                "index": index,
                "type": kind,
                "address": wallet.address(self.network, script),
            }
            self.addresses[script.hex()] = entry
            self.store.put("address", script.hex(), entry)
            entries[kind] = entry
        return entries

    def _spendable_utxos(self) -> list[dict[str, Any]]:
        return [
            u
            for u in self.utxos.values()
            if not u["reserved"]
            and self.addresses[u["scriptpubkey"]]["type"] == "bech32"
            and u["status"] == "confirmed"
        ]

    def _select(self, need_sat: int | None, fee_sat: int) -> tuple[list[dict[str, Any]], int]:
        utxos = sorted(self._spendable_utxos(), key=lambda u: -int(u["amount_msat"]))
        total = sum(int(u["amount_msat"]) for u in utxos) // 1000
        if need_sat is None:
            if total <= fee_sat:
                raise RpcError(
                    301,
                    f"Could not afford all sat using all {len(utxos)} available "
                    f"UTXOs: {fee_sat - total}sat short",
                )
            return utxos, total
        chosen, got = [], 0
        for u in utxos:
            chosen.append(u)
            got += int(u["amount_msat"]) // 1000
            if got >= need_sat + fee_sat:
                return chosen, got
        raise RpcError(
            301,
            f"Could not afford {need_sat}sat using all {len(utxos)} available "
            f"UTXOs: {need_sat + fee_sat - total}sat short",
        )

    def _sign_inputs(self, chosen: list[dict[str, Any]]) -> list[tuple[str, int, int, Any]]:
        return [
            (
                u["txid"],
                u["output"],
                int(u["amount_msat"]) // 1000,
                wallet.derive_key(
                    self.hsm_secret, "wallet", self.addresses[u["scriptpubkey"]]["index"]
                ),
            )
            for u in chosen
        ]

    def _spend(self, chosen: list[dict[str, Any]]) -> None:
        """Reserve the inputs of a broadcast tx until a block shows them spent (as lightningd).

        Our own outputs of that tx (change) appear in listfunds once it is mined.
        """
        with self.store.txn():
            for u in chosen:
                u["reserved"] = True
                u["reserved_to_block"] = self.blockheight + 72
                self.store.put("utxo", f"{u['txid']}:{u['output']}", u)

    def _psbt(self, tx: CMutableTransaction) -> str:
        import base64

        unsigned = CTransaction(
            [type(i)(i.prevout, i.scriptSig, i.nSequence) for i in tx.vin],
            tx.vout,
            tx.nLockTime,
            tx.nVersion,
        ).serialize()
        body = b"psbt\xff" + b"\x01\x00" + _varint(len(unsigned)) + unsigned + b"\x00"
        body += b"\x00" * (len(tx.vin) + len(tx.vout))
        return base64.b64encode(body).decode()

    # ------------------------------------------------------------------ backups
    def write_emergency_recover(self) -> None:
        """Rewrite emergency.recover (on each channel open/close), like chanbackup does."""
        scbs = b"".join(bytes.fromhex(s) for s in self._scbs())
        nonce = os.urandom(12)
        cipher = bytes(a ^ b for a, b in zip(scbs, self._keystream(nonce, len(scbs)), strict=False))
        tag = hashlib.sha256(self._scb_key() + nonce + cipher).digest()[:16]
        body = struct.pack(">QI", 1, int(time.time())) + nonce + cipher + tag
        path = self.dir / "emergency.recover"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(body)
        tmp.chmod(0o600)
        tmp.replace(path)

    def _scb_key(self) -> bytes:
        return hashlib.sha256(b"scb key" + self.hsm_secret).digest()

    def _keystream(self, nonce: bytes, length: int) -> bytes:
        stream = b""
        counter = 0
        while len(stream) < length:
            stream += hashlib.sha256(self._scb_key() + nonce + counter.to_bytes(4, "big")).digest()
            counter += 1
        return stream

    def read_emergency_recover(self) -> list[dict[str, Any]]:
        """The channels in emergency.recover (checked against this hsm_secret)."""
        path = self.dir / "emergency.recover"
        if not path.exists():
            return []
        body = path.read_bytes()
        nonce, cipher, tag = body[12:24], body[24:-16], body[-16:]
        if hashlib.sha256(self._scb_key() + nonce + cipher).digest()[:16] != tag:
            raise RpcError(-1, "emergency.recover was not made with this hsm_secret")
        raw = bytes(
            a ^ b for a, b in zip(cipher, self._keystream(nonce, len(cipher)), strict=False)
        )
        out = []
        pos = 0
        while pos < len(raw):
            channel_id = raw[pos + 8 : pos + 40].hex()
            peer_id = raw[pos + 40 : pos + 73].hex()
            addr_len = 7 if raw[pos + 73] == 1 else 1
            pos += 73 + addr_len + 32 + 12
            out.append({"channel_id": channel_id, "peer_id": peer_id})
        return out

    def _scbs(self) -> list[str]:
        out = []
        for ch in self.channels.values():
            if ch["state"] == "ONCHAIN":
                continue
            peer = self.known_peers.get(ch["peer_id"], {})
            host = peer.get("host") or "127.0.0.1"
            port = int(peer.get("port") or 0)
            addr = (
                b"\x01" + bytes(int(x) for x in host.split(".")) + port.to_bytes(2, "big")
                if host.count(".") == 3
                else b"\x00"
            )
            raw = (
                struct.pack(">Q", ch["dbid"])
                + bytes.fromhex(ch["channel_id"])
                + bytes.fromhex(ch["peer_id"])
                + addr
                + bytes.fromhex(ch["funding_txid"])[::-1]
                + struct.pack(">IQ", ch["funding_outnum"], ch["total_msat"] // 1000)
            )
            out.append(raw.hex())
        return out

    # ------------------------------------------------------------------ peers
    async def _accept_peer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        link = PeerLink(reader, writer, self._on_peer_message, "in")
        await link.run()
        self._peer_gone(link)

    async def _reconnect(self, peer: dict[str, Any]) -> None:
        while not self.stopping.is_set() and peer["id"] not in self.peers:
            try:
                await self.connect_peer(peer["id"], peer["host"], int(peer["port"]))
                return
            except RpcError:
                await asyncio.sleep(1)

    async def connect_peer(self, node_id: str, host: str, port: int) -> PeerLink:
        """Dial a stand-in peer and exchange hello messages."""
        if node_id in self.peers:
            return self.peers[node_id]
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        except (TimeoutError, OSError) as exc:
            reason = "Connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc)
            raise RpcError(
                401, f"All addresses failed: {host}:{port}: Connection establishment: {reason}. "
            ) from exc
        link = PeerLink(reader, writer, self._on_peer_message, "out")
        self.spawn(self._run_link(link))
        reply = await link.request(self._hello())
        if reply.get("id") != node_id:
            link.close()
            raise RpcError(
                402, f"disconnected during connection: peer is {reply.get('id')}, not {node_id}"
            )
        self._peer_up(link, reply, host, port)
        return link

    async def _run_link(self, link: PeerLink) -> None:
        await link.run()
        self._peer_gone(link)

    def _hello(self) -> dict[str, Any]:
        return {
            "t": "hello",
            "id": self.node_id,
            "alias": self.alias,
            "port": self.listen[0][1] if self.listen else 0,
            "outside": self.outside.node_ids() if self.outside is not None else [],
        }

    def _peer_up(self, link: PeerLink, hello: dict[str, Any], host: str, port: int) -> None:
        link.peer_id = str(hello["id"])
        link.listen_port = int(hello.get("port") or 0)
        self.peers[link.peer_id] = link
        peer = self.known_peers.get(link.peer_id, {"id": link.peer_id})
        peer.update({"alias": hello.get("alias"), "outside": hello.get("outside", [])})
        if link.direction == "out":
            peer.update({"host": host, "port": port})
        self.known_peers[link.peer_id] = peer
        self.store.put("peer", link.peer_id, peer)
        self.publish(
            "connect",
            {
                "id": link.peer_id,
                "direction": link.direction,
                "address": {"type": "ipv4", "address": host, "port": port},
            },
        )
        self.log("INFO", f"{link.peer_id}-connectd", "Connected")

    def _peer_gone(self, link: PeerLink) -> None:
        if link.peer_id and self.peers.get(link.peer_id) is link:
            del self.peers[link.peer_id]
            self.publish("disconnect", {"id": link.peer_id})
            self.log("INFO", f"{link.peer_id}-connectd", "Peer disconnected")
            if not self.stopping.is_set() and link.direction == "out":
                peer = self.known_peers.get(link.peer_id)
                if peer and any(
                    c["peer_id"] == link.peer_id and c["state"] != "ONCHAIN"
                    for c in self.channels.values()
                ):
                    self.spawn(self._reconnect(peer))

    async def _on_peer_message(self, link: PeerLink, msg: dict[str, Any]) -> dict[str, Any] | None:
        kind = msg.get("t")
        if kind == "hello":
            host, port = link.remote_addr
            self._peer_up(link, msg, host, port)
            return self._hello()
        handler: Callable[[PeerLink, dict[str, Any]], Awaitable[dict[str, Any]]] | None = {
            "open_channel": self._peer_open_channel,
            "funding_created": self._peer_funding_created,
            "add_htlc": self._peer_add_htlc,
            "shift": self._peer_shift,
            "close_sign": self._peer_close_sign,
            "query_node": self._peer_query_node,
        }.get(str(kind))
        if handler is None:
            return {"error": f"unknown message {kind}"}
        return await handler(link, msg)

    def _channel_with(
        self, peer_id: str, states: tuple[str, ...] = ("CHANNELD_NORMAL",)
    ) -> dict[str, Any] | None:
        for ch in self.channels.values():
            if ch["peer_id"] == peer_id and ch["state"] in states:
                return ch
        return None

    # ------------------------------------------------------------------ channel open
    def _new_channel(
        self,
        peer_id: str,
        opener: str,
        total_msat: int,
        push_msat: int,
        funding_txid: str,
        outnum: int,
        our_pub: str,
        their_pub: str,
        key_index: int,
    ) -> dict[str, Any]:
        dbid = self._next_var("channel_dbid")
        close_entry = self.new_address()["bech32"]
        to_us = total_msat - push_msat if opener == "local" else push_msat
        ch: dict[str, Any] = {
            "dbid": dbid,
            "channel_id": wallet.channel_id(funding_txid, outnum),
            "peer_id": peer_id,
            "opener": opener,
            "total_msat": total_msat,
            "to_us_msat": to_us,
            "min_to_us_msat": to_us,
            "max_to_us_msat": to_us,
            "push_msat": push_msat,
            "state": "CHANNELD_AWAITING_LOCKIN",
            "funding_txid": funding_txid,
            "funding_outnum": outnum,
            "our_funding_pub": our_pub,
            "their_funding_pub": their_pub,
            "funding_key_index": key_index,
            "state_changes": [],
            "alias_local": _random_scid(),
            "alias_remote": _random_scid(),
            "close_to_addr": close_entry["address"],
            "close_to": close_entry["script"],
            "in_payments_offered": 0,
            "in_offered_msat": 0,
            "in_payments_fulfilled": 0,
            "in_fulfilled_msat": 0,
            "out_payments_offered": 0,
            "out_offered_msat": 0,
            "out_payments_fulfilled": 0,
            "out_fulfilled_msat": 0,
            "feerate_perkw": 1250,
        }
        self.channels[ch["channel_id"]] = ch
        self._save_channel(ch)
        self.write_emergency_recover()
        return ch

    async def _peer_open_channel(self, link: PeerLink, msg: dict[str, Any]) -> dict[str, Any]:
        index = self._next_var("funding_key_index")
        pub = bytes(wallet.derive_key(self.hsm_secret, "funding", index).pub).hex()
        return {"funding_pubkey": pub, "key_index": index}

    async def _peer_funding_created(self, link: PeerLink, msg: dict[str, Any]) -> dict[str, Any]:
        ch = self._new_channel(
            link.peer_id,
            "remote",
            int(msg["total_msat"]),
            int(msg["push_msat"]),
            str(msg["funding_txid"]),
            int(msg["outnum"]),
            str(msg["their_pub"]),
            str(msg["opener_pub"]),
            int(msg["key_index"]),
        )
        self.publish(
            "channel_opened",
            {
                "id": link.peer_id,
                "funding_msat": ch["total_msat"],
                "funding_txid": ch["funding_txid"],
                "channel_ready": False,
            },
        )
        return {"ok": True}

    async def fundchannel(self, peer_id: str, amount: Any, push_msat: int) -> dict[str, Any]:
        """Open a channel: real funding tx to a 2-of-2 P2WSH, broadcast through bitcoind."""
        link = self.peers.get(peer_id)
        if link is None:
            raise RpcError(-1, "Peer not connected")
        if self._channel_with(peer_id, ("CHANNELD_AWAITING_LOCKIN", "CHANNELD_NORMAL")):
            raise RpcError(-1, "Peer already CHANNELD_NORMAL")
        want = None if amount == "all" else _sat(amount, "amount")
        chosen, got = self._select(want, OPEN_FEE_SAT)
        sats = got - OPEN_FEE_SAT if want is None else want
        reply = await link.request(
            {"t": "open_channel", "amount_sat": sats, "push_msat": push_msat}
        )
        index = self._next_var("funding_key_index")
        our_key = wallet.derive_key(self.hsm_secret, "funding", index)
        their_pub = bytes.fromhex(str(reply["funding_pubkey"]))
        script = wallet.funding_script(bytes(our_key.pub), their_pub)
        outputs = [(wallet.p2wsh_script(bytes(script)), sats)]
        change = got - sats - OPEN_FEE_SAT
        if change > 546:
            outputs.append((bytes.fromhex(self.new_address()["bech32"]["script"]), change))
        tx = wallet.build_spend(self._sign_inputs(chosen), outputs)
        txid = b2lx(tx.GetTxid())
        await link.request(
            {
                "t": "funding_created",
                "total_msat": sats * 1000,
                "push_msat": push_msat,
                "funding_txid": txid,
                "outnum": 0,
                "opener_pub": bytes(our_key.pub).hex(),
                "their_pub": reply["funding_pubkey"],
                "key_index": reply["key_index"],
            }
        )
        try:
            await self.chain.call("sendrawtransaction", tx.serialize().hex())
        except BitcoindError as exc:
            raise RpcError(-1, f"Error broadcasting transaction: {exc.message}") from exc
        self._spend(chosen)
        ch = self._new_channel(
            peer_id,
            "local",
            sats * 1000,
            push_msat,
            txid,
            0,
            bytes(our_key.pub).hex(),
            str(reply["funding_pubkey"]),
            index,
        )
        return {
            "tx": tx.serialize().hex(),
            "txid": txid,
            "channel_id": ch["channel_id"],
            "channel_type": CHANNEL_TYPE,
            "outnum": 0,
        }

    # ------------------------------------------------------------------ channel close
    async def close_channel(self, peer_id: str, destination: bytes | None = None) -> dict[str, Any]:
        """Mutual close: both peers sign the closing tx, we broadcast it.

        `destination` (a scriptPubKey) receives our share instead of our close_to address.
        """
        ch = self._channel_with(peer_id, ("CHANNELD_NORMAL", "CHANNELD_AWAITING_LOCKIN"))
        link = self.peers.get(peer_id)
        if ch is None:
            raise RpcError(-32602, f"id: Short channel ID not active: '{peer_id}'")
        if link is None:
            raise RpcError(-1, "Peer not connected (simulation: unilateral close not simulated)")
        self._set_state(
            ch, "CHANNELD_SHUTTING_DOWN", "user", "User or plugin invoked close command"
        )
        ours = ch["to_us_msat"] // 1000 - (CLOSE_FEE_SAT if ch["opener"] == "local" else 0)
        reply = await link.request(
            {"t": "close_sign", "channel_id": ch["channel_id"], "phase": "outputs"}
        )
        outputs = [
            (destination or bytes.fromhex(ch["close_to"]), ours),
            (bytes.fromhex(str(reply["close_to"])), int(reply["amount_sat"])),
        ]
        outputs.sort(key=lambda o: (o[1], o[0]))
        tx = wallet.unsigned_close(ch["funding_txid"], ch["funding_outnum"], outputs)
        script = wallet.funding_script(
            bytes.fromhex(ch["our_funding_pub"]), bytes.fromhex(ch["their_funding_pub"])
        )
        our_sig = wallet.sign_close(
            tx,
            script,
            ch["total_msat"] // 1000,
            wallet.derive_key(self.hsm_secret, "funding", ch["funding_key_index"]),
        )
        reply = await link.request(
            {
                "t": "close_sign",
                "channel_id": ch["channel_id"],
                "phase": "sign",
                "tx": tx.serialize().hex(),
            }
        )
        wallet.finish_close(
            tx,
            script,
            {
                bytes.fromhex(ch["our_funding_pub"]): our_sig,
                bytes.fromhex(ch["their_funding_pub"]): bytes.fromhex(str(reply["sig"])),
            },
        )
        txid = b2lx(tx.GetTxid())
        with contextlib.suppress(BitcoindError):
            await self.chain.call("sendrawtransaction", tx.serialize().hex())
        self._closed(ch, tx, "local")
        return {"txs": [tx.serialize().hex()], "txids": [txid], "type": "mutual"}

    def _closed(self, ch: dict[str, Any], tx: CMutableTransaction, closer: str) -> None:
        self._set_state(
            ch, "CLOSINGD_SIGEXCHANGE", "user" if closer == "local" else "remote", "Start closingd"
        )
        ch["closer"] = closer
        ch["close_txid"] = b2lx(tx.GetTxid())
        ch["last_tx_fee_msat"] = CLOSE_FEE_SAT * 1000
        self._set_state(
            ch, "CLOSINGD_COMPLETE", "user" if closer == "local" else "remote", "Closing complete"
        )
        self.write_emergency_recover()

    async def _peer_close_sign(self, link: PeerLink, msg: dict[str, Any]) -> dict[str, Any]:
        ch = self.channels.get(str(msg["channel_id"]))
        if ch is None:
            return {"error": "unknown channel"}
        if msg["phase"] == "outputs":
            if ch["state"] != "CHANNELD_SHUTTING_DOWN":
                self._set_state(ch, "CHANNELD_SHUTTING_DOWN", "remote", "Peer closes channel")
            ours = ch["to_us_msat"] // 1000 - (CLOSE_FEE_SAT if ch["opener"] == "local" else 0)
            return {"close_to": ch["close_to"], "amount_sat": ours}
        tx = CMutableTransaction.from_tx(CTransaction.deserialize(bytes.fromhex(str(msg["tx"]))))
        script = wallet.funding_script(
            bytes.fromhex(ch["our_funding_pub"]), bytes.fromhex(ch["their_funding_pub"])
        )
        sig = wallet.sign_close(
            tx,
            script,
            ch["total_msat"] // 1000,
            wallet.derive_key(self.hsm_secret, "funding", ch["funding_key_index"]),
        )
        self._closed(ch, tx, "remote")
        return {"sig": sig.hex()}

    # ------------------------------------------------------------------ balances
    def spendable(self, ch: dict[str, Any]) -> int:
        """What we can send over a channel now."""
        if ch["state"] != "CHANNELD_NORMAL" or ch["peer_id"] not in self.peers:
            return 0
        reserve = int(ch["total_msat"]) // 100
        fee = COMMIT_FEE_MSAT if ch["opener"] == "local" else 0
        in_flight = self.pending_out.get(ch["channel_id"], 0)
        return max(0, min(int(ch["to_us_msat"]) - in_flight - reserve - fee, HTLC_MAX_MSAT))

    def receivable(self, ch: dict[str, Any]) -> int:
        """What we can receive over a channel now."""
        if ch["state"] != "CHANNELD_NORMAL":
            return 0
        reserve = int(ch["total_msat"]) // 100
        fee = COMMIT_FEE_MSAT if ch["opener"] == "remote" else 0
        return max(
            0, min(int(ch["total_msat"]) - int(ch["to_us_msat"]) - reserve - fee, HTLC_MAX_MSAT)
        )

    def _move(self, ch: dict[str, Any], delta_msat: int, direction: str) -> None:
        """Apply a settled HTLC (delta to us; direction 'in' or 'out')."""
        ch["to_us_msat"] += delta_msat
        ch["min_to_us_msat"] = min(ch["min_to_us_msat"], ch["to_us_msat"])
        ch["max_to_us_msat"] = max(ch["max_to_us_msat"], ch["to_us_msat"])
        if direction:
            ch[f"{direction}_payments_offered"] += 1
            ch[f"{direction}_offered_msat"] += abs(delta_msat)
            ch[f"{direction}_payments_fulfilled"] += 1
            ch[f"{direction}_fulfilled_msat"] += abs(delta_msat)
        self._save_channel(ch)

    async def _peer_shift(self, link: PeerLink, msg: dict[str, Any]) -> dict[str, Any]:
        ch = self.channels.get(str(msg["channel_id"]))
        if ch is None:
            return {"error": "unknown channel"}
        self._move(ch, int(msg["amount_msat"]), "")
        return {"ok": True, "to_us_msat": ch["to_us_msat"]}

    async def shift_balance(self, peer_id: str, amount_msat: int) -> dict[str, Any]:
        """Move balance from us to the peer (negative: from the peer to us), both sides agree."""
        ch = self._channel_with(peer_id)
        link = self.peers.get(peer_id)
        if ch is None or link is None:
            raise RpcError(-1, f"no active channel with {peer_id}")
        if amount_msat > ch["to_us_msat"] or -amount_msat > ch["total_msat"] - ch["to_us_msat"]:
            raise RpcError(-1, "shift larger than the balance on that side")
        reply = await link.request(
            {"t": "shift", "channel_id": ch["channel_id"], "amount_msat": amount_msat}
        )
        if "error" in reply:
            raise RpcError(-1, str(reply["error"]))
        self._move(ch, -amount_msat, "")
        return {
            "channel_id": ch["channel_id"],
            "to_us_msat": ch["to_us_msat"],
            "peer_to_us_msat": reply["to_us_msat"],
        }

    # ------------------------------------------------------------------ HTLCs
    async def _peer_add_htlc(self, link: PeerLink, msg: dict[str, Any]) -> dict[str, Any]:
        ch = self.channels.get(str(msg["channel_id"]))
        amount = int(msg["amount_msat"])
        if ch is None or ch["state"] != "CHANNELD_NORMAL":
            return self._fail(WIRE_TEMPORARY_CHANNEL_FAILURE)
        if self.fail_next_htlc is not None:
            code, self.fail_next_htlc = self.fail_next_htlc, None
            return self._fail(code)
        destination = str(msg["destination"])
        if destination == self.node_id:
            return self._receive(ch, msg)
        return await self._forward(ch, msg, amount, destination)

    def _fail(self, code: int, erring: str | None = None) -> dict[str, Any]:
        return {
            "fail": code,
            "failcodename": FAILCODE_NAMES.get(code, str(code)),
            "erring_node": erring or self.node_id,
        }

    def _receive(self, ch: dict[str, Any], msg: dict[str, Any]) -> dict[str, Any]:
        amount = int(msg["amount_msat"])
        payment_hash = str(msg["payment_hash"])
        preimage = msg.get("keysend_preimage")
        inv: dict[str, Any] | None
        if preimage:
            if hashlib.sha256(bytes.fromhex(str(preimage))).hexdigest() != payment_hash:
                return self._fail(WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS)
            label = f"keysend-{time.time():.9f}"
            inv = self._create_invoice(
                label, amount, "", 604800, preimage=bytes.fromhex(str(preimage)), keysend=True
            )
        else:
            found = [i for i in self.invoices.values() if i["payment_hash"] == payment_hash]
            inv = found[0] if found else None
            if (
                inv is None
                or inv["status"] != "unpaid"
                or inv["expires_at"] < time.time()
                or inv["payment_secret"] != msg.get("payment_secret")
                or ("amount_msat" in inv and amount < inv["amount_msat"])
            ):
                self._move_fail(ch)
                return self._fail(WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS)
        with self.store.txn():
            self._move(ch, amount, "in")
            self._mark_paid(inv, amount)
        return {"fulfill": inv["payment_preimage"]}

    def _move_fail(self, ch: dict[str, Any]) -> None:
        ch["in_payments_offered"] += 1
        self._save_channel(ch)

    def _mark_paid(self, inv: dict[str, Any], amount: int) -> None:
        inv["status"] = "paid"
        inv["pay_index"] = self._next_var("pay_index")
        inv["amount_received_msat"] = amount
        inv["paid_at"] = int(time.time())
        inv["updated_index"] = self._next_var("invoice_updated_index")
        self.store.put("invoice", inv["label"], inv)
        self.publish(
            "invoice_payment",
            {"msat": amount, "preimage": inv["payment_preimage"], "label": inv["label"]},
        )
        self.spawn(self._notify_invoices())

    async def _notify_invoices(self) -> None:
        async with self.invoice_changed:
            self.invoice_changed.notify_all()

    async def _forward(
        self, ch_in: dict[str, Any], msg: dict[str, Any], amount: int, destination: str
    ) -> dict[str, Any]:
        out_link = self.peers.get(destination)
        ch_out = self._channel_with(destination) if out_link else None
        out_amount = int(msg.get("forward_msat") or amount - fee_for(amount))
        if self.outside is not None and self.outside.owns(destination):
            settled: dict[str, Any] = await self.outside.settle_forward(
                self, ch_in, msg, amount, out_amount
            )
            return settled
        if ch_out is None or out_link is None:
            return self._fail(WIRE_UNKNOWN_NEXT_PEER)
        if self.spendable(ch_out) < out_amount:
            return self._fail(WIRE_TEMPORARY_CHANNEL_FAILURE)
        fwd = self._record_forward(
            ch_in, ch_out.get("short_channel_id", ""), amount, out_amount, str(msg["payment_hash"])
        )
        cid = ch_out["channel_id"]
        self.pending_out[cid] = self.pending_out.get(cid, 0) + out_amount
        try:
            reply = await out_link.request(
                {**msg, "t": "add_htlc", "channel_id": cid, "amount_msat": out_amount}
            )
        except (TimeoutError, PeerError):
            reply = self._fail(WIRE_TEMPORARY_CHANNEL_FAILURE)
        finally:
            self.pending_out[cid] -= out_amount
        if "fulfill" in reply:
            with self.store.txn():
                self._move(ch_in, amount, "in")
                self._move(ch_out, -out_amount, "out")
                self._resolve_forward(fwd, "settled", str(reply["fulfill"]))
            return {"fulfill": reply["fulfill"]}
        self._resolve_forward(fwd, "failed", None)
        return reply

    def _record_forward(
        self, ch_in: dict[str, Any], out_scid: str, in_msat: int, out_msat: int, payment_hash: str
    ) -> dict[str, Any]:
        index = self._next_var("forward_index")
        fwd: dict[str, Any] = {
            "created_index": index,
            "in_channel": ch_in.get("short_channel_id", ""),
            "in_htlc_id": ch_in["in_payments_offered"],
            "out_channel": out_scid,
            "out_htlc_id": 0,
            "in_msat": in_msat,
            "out_msat": out_msat,
            "fee_msat": in_msat - out_msat,
            "status": "offered",
            "style": "tlv",
            "received_time": time.time(),
            "payment_hash": payment_hash,
        }
        self.forwards.append(fwd)
        self.store.put("forward", index, fwd)
        event = {k: v for k, v in fwd.items() if k != "out_htlc_id"}
        self.publish(
            "forward_event",
            {
                "created_index": index,
                "payment_hash": payment_hash,
                **{k: v for k, v in event.items() if k not in ("created_index", "payment_hash")},
            },
        )
        return fwd

    def _resolve_forward(self, fwd: dict[str, Any], status: str, preimage: str | None) -> None:
        fwd["status"] = status
        fwd["resolved_time"] = time.time()
        fwd["updated_index"] = self._next_var("forward_updated_index")
        self.store.put("forward", fwd["created_index"], fwd)
        body: dict[str, Any] = {
            "updated_index": fwd["updated_index"],
            "payment_hash": fwd["payment_hash"],
        }
        for k in ("in_channel", "in_htlc_id", "out_channel", "in_msat", "out_msat", "fee_msat"):
            body[k] = fwd[k]
        body.update(
            {
                "status": status,
                "style": "tlv",
                "received_time": fwd["received_time"],
                "resolved_time": fwd["resolved_time"],
            }
        )
        if preimage:
            body["preimage"] = preimage
        self.publish("forward_event", body)

    # ------------------------------------------------------------------ invoices
    def _create_invoice(
        self,
        label: str,
        amount_msat: int | None,
        description: str,
        expiry: int,
        preimage: bytes | None = None,
        keysend: bool = False,
    ) -> dict[str, Any]:
        preimage = preimage or os.urandom(32)
        payment_hash = hashlib.sha256(preimage).digest()
        secret = os.urandom(32)
        created = int(time.time())
        inv = bolt11.Invoice(
            currency=self.currency,
            created_at=created,
            payment_hash=payment_hash,
            payment_secret=secret,
            amount_msat=amount_msat,
            description=description,
            expiry=expiry,
            min_final_cltv_expiry=10 if self.network == "regtest" else 18,
        )
        text = bolt11.encode(inv, self.key)
        record: dict[str, Any] = {"label": label}
        if not keysend:
            record["bolt11"] = text
        record["payment_hash"] = payment_hash.hex()
        if amount_msat is not None:
            record["amount_msat"] = amount_msat
        record.update(
            {
                "status": "unpaid",
                "description": description,
                "expires_at": created + expiry,
                "created_index": self._next_var("invoice_created_index"),
                "payment_secret": secret.hex(),
                "payment_preimage": preimage.hex(),
            }
        )
        self.invoices[label] = record
        self.store.put("invoice", label, record)
        return record

    def invoice_json(self, inv: dict[str, Any]) -> dict[str, Any]:
        """listinvoices entry (key order as lightningd)."""
        status = inv["status"]
        if status == "unpaid" and inv["expires_at"] < time.time():
            status = "expired"
        out: dict[str, Any] = {"label": inv["label"]}
        for k in ("bolt11", "payment_hash", "amount_msat"):
            if k in inv:
                out[k] = inv[k]
        out["status"] = status
        if status == "paid":
            out.update(
                {
                    "pay_index": inv["pay_index"],
                    "amount_received_msat": inv["amount_received_msat"],
                    "paid_at": inv["paid_at"],
                    "payment_preimage": inv["payment_preimage"],
                }
            )
        out["description"] = inv["description"]
        out["expires_at"] = inv["expires_at"]
        out["created_index"] = inv["created_index"]
        if "updated_index" in inv:
            out["updated_index"] = inv["updated_index"]
        return out

    # ------------------------------------------------------------------ paying
    def _sendpay_json(self, sp: dict[str, Any]) -> dict[str, Any]:
        keys = (
            "created_index",
            "id",
            "payment_hash",
            "groupid",
            "updated_index",
            "partid",
            "destination",
            "amount_msat",
            "amount_sent_msat",
            "created_at",
            "completed_at",
            "status",
            "payment_preimage",
            "bolt11",
        )
        return {k: sp[k] for k in keys if k in sp and sp[k] is not None}

    def _new_sendpay(
        self,
        payment_hash: str,
        destination: str,
        amount: int,
        sent: int,
        bolt11_text: str | None,
        xpay: bool,
    ) -> dict[str, Any]:
        index = self._next_var("sendpay_index")
        same = [s for s in self.sendpays if s["payment_hash"] == payment_hash]
        sp: dict[str, Any] = {
            "created_index": index,
            "id": index,
            "payment_hash": payment_hash,
            "groupid": secrets.randbits(63)
            if xpay
            else (max((s["groupid"] for s in same), default=0) + 1),
            "partid": 1 if xpay else None,
            "destination": destination,
            "amount_msat": amount,
            "amount_sent_msat": sent,
            "created_at": int(time.time()),
            "status": "pending",
            "bolt11": bolt11_text,
        }
        self.sendpays.append(sp)
        self.store.put("sendpay", index, sp)
        return sp

    def _finish_sendpay(
        self,
        sp: dict[str, Any],
        preimage: str | None,
        failcode: int | None,
        erring: str | None = None,
        message: str | None = None,
    ) -> None:
        sp["updated_index"] = self._next_var("sendpay_updated_index")
        if preimage is not None:
            sp.update(
                {
                    "status": "complete",
                    "completed_at": int(time.time()),
                    "payment_preimage": preimage,
                }
            )
            self.store.put("sendpay", sp["id"], sp)
            self.publish("sendpay_success", self._sendpay_json(sp))
            return
        sp["status"] = "failed"
        sp["failcode"] = failcode
        self.store.put("sendpay", sp["id"], sp)
        name = FAILCODE_NAMES.get(failcode or 0, str(failcode))
        data = {
            **{k: v for k, v in self._sendpay_json(sp).items() if k != "updated_index"},
            "status": "pending",
            "erring_index": 1,
            "failcode": failcode,
            "failcodename": name,
            "raw_message": f"{failcode or 0:04x}",
        }
        self.publish(
            "sendpay_failure",
            {
                "code": 204,
                "message": message or f"failed: {name} (reply from remote)",
                "data": data,
            },
        )

    def _route(self, destination: str, amount: int) -> tuple[dict[str, Any] | None, int, str]:
        """(channel, amount to send, reason): direct to a peer, else through one."""
        direct = self._channel_with(destination)
        if direct is not None:
            return (
                (direct, amount, "") if self.spendable(direct) >= amount else (None, 0, "capacity")
            )
        fee = fee_for(amount)
        for ch in self.channels.values():
            if ch["state"] == "CHANNELD_NORMAL" and self.spendable(ch) >= amount + fee:
                return ch, amount + fee, ""
        return None, 0, "capacity" if self._normal_channels() else "nochannel"

    def _normal_channels(self) -> list[dict[str, Any]]:
        return [c for c in self.channels.values() if c["state"] == "CHANNELD_NORMAL"]

    async def resolve_destination(self, node_id: str) -> bool:
        """Gossip stand-in: is the node our peer, behind a peer, or a channel peer of a peer?"""
        if self.known_destination(node_id):
            return True
        for link in list(self.peers.values()):
            with contextlib.suppress(PeerError, asyncio.TimeoutError):
                reply = await link.request({"t": "query_node", "id": node_id}, wait=5)
                if reply.get("known"):
                    return True
        return False

    async def _peer_query_node(self, link: PeerLink, msg: dict[str, Any]) -> dict[str, Any]:
        node_id = str(msg["id"])
        known = node_id == self.node_id or self._channel_with(node_id) is not None
        if self.outside is not None and self.outside.owns(node_id):
            known = True
        return {"known": known}

    def known_destination(self, node_id: str) -> bool:
        """Gossip stand-in: peers, and the nodes our peers told us are behind them."""
        if node_id in self.known_peers:
            return True
        return any(node_id in p.get("outside", []) for p in self.known_peers.values())

    def capacity_error(self) -> RpcError:
        """xpay's 205 when no path has the capacity."""
        chans = self._normal_channels()
        total = sum(self.spendable(c) for c in chans) if chans else 0
        return RpcError(
            205,
            f"Failed: We could not find a usable set of paths. Total source "
            f"capacity is only {total}msat (in {len(chans)} channels).",
        )

    async def send_payment(
        self,
        destination: str,
        payment_hash: str,
        amount: int,
        bolt11_text: str | None,
        payment_secret: str | None,
        keysend_preimage: str | None,
        xpay: bool,
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Route one HTLC; returns (sendpay record, failure reply or None)."""
        ch, sent, _reason = self._route(destination, amount)
        if ch is None:
            raise (
                self.capacity_error()
                if xpay
                else RpcError(
                    210,
                    "Ran out of routes to try after 1 attempt: see `paystatus`",
                    {
                        "attempts": [
                            {
                                "status": "failed",
                                "failreason": "No path found",
                                "partid": 0,
                                "amount_msat": amount,
                            }
                        ]
                    },
                )
            )
        sp = self._new_sendpay(payment_hash, destination, amount, sent, bolt11_text, xpay)
        inject = self.fail_next
        self.fail_next = None
        if (
            inject is not None
            and int(inject.get("code", 0)) == 210
            and inject.get("pending_seconds")
        ):
            self.spawn(
                self._delayed_part(
                    sp, ch, sent, destination, payment_secret, keysend_preimage, inject
                )
            )
            raise RpcError(
                210,
                "Ran out of routes to try after 1 attempt: see `paystatus`",
                {
                    "attempts": [
                        {
                            "status": "pending",
                            "failreason": "No path found",
                            "partid": 0,
                            "amount_msat": amount,
                        }
                    ]
                },
            )
        reply = await self._send_htlc(
            ch, sent, amount, destination, payment_hash, payment_secret, keysend_preimage
        )
        if "fulfill" in reply:
            self._finish_sendpay(sp, str(reply["fulfill"]), None)
            return sp, None
        self._finish_sendpay(sp, None, int(reply.get("fail", 0)))
        return sp, reply

    async def _send_htlc(
        self,
        ch: dict[str, Any],
        sent: int,
        amount: int,
        destination: str,
        payment_hash: str,
        payment_secret: str | None,
        keysend_preimage: str | None,
    ) -> dict[str, Any]:
        link = self.peers.get(ch["peer_id"])
        if link is None:
            return self._fail(WIRE_TEMPORARY_CHANNEL_FAILURE)
        cid = ch["channel_id"]
        self.pending_out[cid] = self.pending_out.get(cid, 0) + sent
        try:
            reply = await link.request(
                {
                    "t": "add_htlc",
                    "channel_id": ch["channel_id"],
                    "amount_msat": sent,
                    "forward_msat": amount,
                    "destination": destination,
                    "payment_hash": payment_hash,
                    "payment_secret": payment_secret,
                    "keysend_preimage": keysend_preimage,
                }
            )
        except (TimeoutError, PeerError):
            return self._fail(WIRE_TEMPORARY_CHANNEL_FAILURE)
        finally:
            self.pending_out[cid] -= sent
        if "fulfill" in reply:
            self._move(ch, -sent, "out")
        else:
            ch["out_payments_offered"] += 1
            ch["out_offered_msat"] += sent
            self._save_channel(ch)
        return reply

    async def _delayed_part(
        self,
        sp: dict[str, Any],
        ch: dict[str, Any],
        sent: int,
        destination: str,
        payment_secret: str | None,
        keysend_preimage: str | None,
        inject: dict[str, Any],
    ) -> None:
        await asyncio.sleep(float(inject["pending_seconds"]))
        if inject.get("then", "complete") == "complete":
            reply = await self._send_htlc(
                ch,
                sent,
                sp["amount_msat"],
                destination,
                sp["payment_hash"],
                payment_secret,
                keysend_preimage,
            )
            if "fulfill" in reply:
                self._finish_sendpay(sp, str(reply["fulfill"]), None)
                return
            self._finish_sendpay(sp, None, int(reply.get("fail", 0)))
            return
        self._finish_sendpay(sp, None, WIRE_MPP_TIMEOUT)


def _random_scid() -> str:
    return f"{secrets.randbelow(2**23)}x{secrets.randbelow(2**23)}x{secrets.randbelow(2**16)}"


def _varint(n: int) -> bytes:
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    return b"\xfe" + n.to_bytes(4, "little")


def _sat(value: Any, name: str) -> int:
    """lightningd's sat amount parsing: int, "1000", "1000sat", "1000000msat"."""
    if isinstance(value, bool):
        raise RpcError(-32602, f"{name}: should be a satoshi amount: invalid token")
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("msat") and text[:-4].isdigit() and int(text[:-4]) % 1000 == 0:
        return int(text[:-4]) // 1000
    if text.endswith("sat") and text[:-3].isdigit():
        return int(text[:-3])
    if text.isdigit():
        return int(text)
    raise RpcError(-32602, f"{name}: should be a satoshi amount: invalid token '{text}'")


def msat_param(value: Any, name: str) -> int:
    """lightningd's msat amount parsing: int, "1000", "1000msat", "1sat"."""
    if isinstance(value, bool):
        raise RpcError(-32602, f"{name}: should be a millisatoshi amount: invalid token")
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("msat") and text[:-4].isdigit():
        return int(text[:-4])
    if text.endswith("sat") and text[:-3].isdigit():
        return int(text[:-3]) * 1000
    if text.isdigit():
        return int(text)
    raise RpcError(-32602, f"{name}: should be a millisatoshi amount: invalid token '{text}'")


def dump(obj: Any) -> str:
    """Compact JSON as lightningd writes it."""
    return json.dumps(obj, separators=(",", ":"))
