"""Follows the daemon: ZMQ for speed, ``listsinceblock`` + ``gettransaction`` for truth.

``rawtx`` shows a payment to a member's address within milliseconds (decoded locally against
the wallet's scripts, no RPC on the hot path). Every block, every gap in a ZMQ counter and a
periodic timer reconcile against the wallet, so confirmations, reorgs and anything missed while
the API or ZMQ was down are caught up from the wallet itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import zmq
import zmq.asyncio
from bitcoin import segwit_addr
from bitcoin.core import CTransaction, b2lx

from scnode_chain_api.events import EventBus
from scnode_chain_api.store import ChainApiStore, WalletOutput
from scnode_core.chain_rpc import (
    ChainRpcClient,
    ChainRpcError,
    ChainUnavailableError,
    to_sats,
)

log = logging.getLogger(__name__)

INCOMING = {"receive", "generate", "immature", "orphan"}
RPC_INVALID_ADDRESS_OR_KEY = -5
REFRESH_PER_PASS = 50


@dataclass(frozen=True)
class WatchedAddress:
    address: str
    label: str


def script_of(address: str) -> str | None:
    """scriptPubKey hex of a segwit address of any HRP, or None when it is not bech32 v0."""
    hrp = address.rsplit("1", 1)[0].lower()
    version, program = segwit_addr.decode(hrp, address.lower())
    if version is None or program is None:
        return None
    op = 0 if version == 0 else 0x50 + version
    return bytes([op, len(program), *program]).hex()


class ChainWatcher:
    """Keeps the store's view of wallet outputs in step with the daemon and emits events."""

    def __init__(
        self,
        rpc: ChainRpcClient,
        store: ChainApiStore,
        bus: EventBus,
        *,
        wallet: str,
        track_confirmations: int,
        zmq_endpoints: dict[str, str],
        reconcile_interval: float = 30.0,
    ) -> None:
        self._rpc = rpc
        self._store = store
        self._bus = bus
        self._wallet = wallet
        self._track = track_confirmations
        self._zmq_endpoints = zmq_endpoints
        self._interval = reconcile_interval
        self._scripts: dict[str, WatchedAddress] = {}
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._ctx: zmq.asyncio.Context | None = None
        self._wake = asyncio.Event()
        self.last_error: str | None = None
        self.zmq_messages = 0
        self.zmq_gaps = 0
        # Change marks for read caches: any block or mempool removal bumps the global one, any
        # output to a watched address bumps that address's one (see change_mark()).
        self._global_changes = 0
        self._address_changes: dict[str, int] = {}
        self._wallet_changes = 0  # any ZMQ message at all, and our own sends

    # -- addresses -------------------------------------------------------------------------
    async def watch(self, address: str, label: str) -> None:
        script = script_of(address)
        if script is None:
            info = await self._rpc.call("getaddressinfo", address, wallet=self._wallet)
            script = str(info["scriptPubKey"])
        self._scripts[script] = WatchedAddress(address, label)

    async def load_addresses(self) -> None:
        labels = await self._rpc.call("listlabels", wallet=self._wallet)
        for label in labels:
            by_label = await self._rpc.call("getaddressesbylabel", label, wallet=self._wallet)
            for address in by_label:
                await self.watch(address, label)

    def label_of(self, address: str) -> str | None:
        """The member label of a watched (deposit) address, without asking the wallet."""
        script = script_of(address)
        watched = self._scripts.get(script) if script else None
        return watched.label if watched is not None and watched.address == address else None

    @property
    def watched(self) -> int:
        return len(self._scripts)

    def change_mark(self, address: str) -> tuple[int, int] | None:
        """A value that changes whenever what the wallet received on ``address`` may change.

        None when the watcher cannot tell (no ZMQ for new transactions and blocks): then nothing
        may be cached. With ZMQ, a new transaction paying the address, a block (confirmations,
        reorgs), a mempool removal and any output change the reconcile finds all move the mark.
        """
        if not self._tasks or not {"rawtx"} <= self._zmq_endpoints.keys():
            return None
        if not self._zmq_endpoints.keys() & {"hashblock", "sequence"}:
            return None
        return (self._global_changes, self._address_changes.get(address, 0))

    def wallet_mark(self) -> int | None:
        """Like change_mark() for the whole wallet: moves with every transaction seen (ours
        or not), block, mempool removal and send through this API; None without ZMQ."""
        if self.change_mark("") is None:
            return None
        return self._wallet_changes

    def touch(self) -> None:
        """Something changed the wallet outside ZMQ's view so far (e.g. our own send)."""
        self._changed()

    def _changed(self, address: str | None = None) -> None:
        self._wallet_changes += 1
        if address is None:
            self._global_changes += 1
        else:
            self._address_changes[address] = self._address_changes.get(address, 0) + 1

    # -- life cycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._reconcile_loop(), name="reconcile"))
        if self._zmq_endpoints:
            self._ctx = zmq.asyncio.Context()
            by_endpoint: dict[str, list[str]] = {}
            for topic, endpoint in self._zmq_endpoints.items():
                by_endpoint.setdefault(endpoint, []).append(topic)
            for endpoint, topics in by_endpoint.items():
                self._tasks.append(
                    asyncio.create_task(self._zmq_loop(endpoint, topics), name=f"zmq {endpoint}")
                )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    def poke(self) -> None:
        """Ask for a reconcile soon (a block arrived, a ZMQ gap was seen)."""
        self._wake.set()

    async def _reconcile_loop(self) -> None:
        loaded = False
        while True:
            try:
                if not loaded:
                    await self.load_addresses()
                    loaded = True
                await self.reconcile()
                self.last_error = None
            except (ChainUnavailableError, ChainRpcError) as exc:
                self.last_error = str(exc)
                log.warning("reconcile failed, will retry: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            self._wake.clear()

    async def _zmq_loop(self, endpoint: str, topics: Iterable[str]) -> None:
        assert self._ctx is not None
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 0)
        for topic in topics:
            sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        sock.connect(endpoint)
        counters: dict[bytes, int] = {}
        try:
            while True:
                frames = await sock.recv_multipart()
                if len(frames) != 3 or len(frames[2]) != 4:
                    log.warning("ignoring a ZMQ message of %d frames", len(frames))
                    continue
                name, body, seq_raw = frames
                seq = struct.unpack("<I", seq_raw)[0]
                expected = counters.get(name)
                if expected is not None and seq != expected:
                    # Messages were dropped (HWM, restart): the wallet is the truth, catch up.
                    self.zmq_gaps += 1
                    self._changed()  # what was missed may have changed anything
                    self.poke()
                counters[name] = (seq + 1) & 0xFFFFFFFF
                self.zmq_messages += 1
                self._wallet_changes += 1
                await self._on_zmq(name, body)
        finally:
            sock.close(linger=0)

    async def _on_zmq(self, topic: bytes, body: bytes) -> None:
        if topic == b"rawtx":
            self.on_rawtx(body)
        elif topic == b"hashblock":
            self._changed()
            self.poke()
        elif topic == b"sequence" and len(body) == 33:
            self._changed()
            label = body[32:33]
            if label == b"D":
                self._bus.publish("block_disconnected", {"hash": body[:32].hex()})
            self.poke()
        elif topic == b"sequence" and len(body) == 41 and body[32:33] == b"R":
            self._changed()  # a mempool removal: unconfirmed receipts may have shrunk

    # -- fast path -------------------------------------------------------------------------
    def on_rawtx(self, raw: bytes) -> None:
        """Announce outputs that pay watched addresses, the moment the tx is seen."""
        if not self._scripts:
            return
        try:
            tx = CTransaction.deserialize(raw)
        except Exception:  # a malformed message must not stop the loop
            log.warning("undecodable rawtx of %d bytes", len(raw))
            return
        txid: str | None = None
        for vout, txout in enumerate(tx.vout):
            watched = self._scripts.get(bytes(txout.scriptPubKey).hex())
            if watched is None:
                continue
            txid = txid or b2lx(tx.GetTxid())
            if self._store.get_output(txid, vout) is not None:
                continue  # seen before (rawtx fires again when the block connects)
            out = WalletOutput(
                txid=txid,
                vout=vout,
                address=watched.address,
                label=watched.label,
                category="receive",
                amount_sats=int(txout.nValue),
                confirmations=0,
                blockhash=None,
                final=False,
            )
            self._store.upsert_output(out)
            self._changed(out.address)
            self._bus.publish("wallet_tx", _output_event(out))

    # -- truth -----------------------------------------------------------------------------
    async def reconcile(self) -> None:
        async with self._lock:
            last = self._store.get_state("last_block") or ""
            base = ""
            if last:
                # One call covers every output whose confirmations can still change: the
                # wallet's transactions of the last `track` blocks, the mempool and conflicts.
                # (The first run lists the whole wallet.) After a downtime longer than `track`
                # blocks it reaches back to the last block this API saw instead, so a payment
                # confirmed meanwhile is never missed (listsinceblock starts from the fork point
                # when that block has since been reorged away).
                start = int(await self._rpc.call("getblockcount")) - self._track
                seen_height = await self._height_of(last)
                if seen_height is not None and seen_height < start:
                    base = last
                elif start > 0:
                    base = str(await self._rpc.call("getblockhash", start))
            result = await self._rpc.call(
                "listsinceblock", base, 1, True, True, wallet=self._wallet
            )
            seen: set[tuple[str, int]] = set()
            for entry in result.get("transactions", []):
                key = self._apply_entry(entry)
                if key:
                    seen.add(key)
            # "removed" lists what the old branch held; some of it is back in the new branch or
            # the mempool, so ask the wallet about each instead of concluding anything here.
            for entry in result.get("removed", []):
                key = (str(entry["txid"]), int(entry.get("vout", 0)))
                known = self._store.get_output(*key)
                if known is not None and key not in seen:
                    await self._refresh(known)
                    seen.add(key)
            # Open outputs the listing did not show (dropped, conflicted, or seen by ZMQ but
            # unknown to the wallet) are asked about one by one — a bounded number per pass (a
            # block or the timer), so a burst of them never floods the daemon.
            missing = [o for o in self._store.open_outputs() if (o.txid, o.vout) not in seen]
            for out in missing[:REFRESH_PER_PASS]:
                await self._refresh(out)
            lastblock = str(result["lastblock"])
            if lastblock != last:
                header = await self._rpc.call("getblockheader", lastblock)
                self._bus.publish("block", {"hash": lastblock, "height": int(header["height"])})
                self._store.set_state("last_block", lastblock)
                self._changed()
            self._store.prune_events(100_000)

    async def _height_of(self, block_hash: str) -> int | None:
        """The height of a block the daemon knows (also a stale one), else None."""
        try:
            header = await self._rpc.call("getblockheader", block_hash)
        except ChainRpcError as exc:
            if exc.code == RPC_INVALID_ADDRESS_OR_KEY:
                return None
            raise
        return int(header["height"])

    def _apply_entry(self, entry: dict[str, Any]) -> tuple[str, int] | None:
        category = str(entry.get("category", ""))
        if category not in INCOMING and category != "send":
            return None
        txid, vout = str(entry["txid"]), int(entry.get("vout", 0))
        confirmations = int(entry.get("confirmations", 0))
        if confirmations < 0:  # conflicted: a double spend won
            self._remove(txid, vout, "conflict")
            return (txid, vout)
        previous = self._store.get_output(txid, vout)
        out = WalletOutput(
            txid=txid,
            vout=vout,
            address=str(entry.get("address", "")),
            label=str(entry.get("label", "")),
            category=category,
            amount_sats=abs(to_sats(entry["amount"])),
            confirmations=confirmations,
            blockhash=entry.get("blockhash"),
            final=confirmations >= self._track,
        )
        if previous is not None and previous.final:
            return (txid, vout)
        self._update(previous, out)
        return (txid, vout)

    async def _refresh(self, out: WalletOutput) -> None:
        try:
            tx = await self._rpc.call("gettransaction", out.txid, True, wallet=self._wallet)
        except ChainRpcError as exc:
            if exc.code == RPC_INVALID_ADDRESS_OR_KEY:
                self._remove(out.txid, out.vout, "gone")
                return
            raise
        confirmations = int(tx.get("confirmations", 0))
        if confirmations < 0:
            self._remove(out.txid, out.vout, "conflict")
            return
        category = out.category
        for detail in tx.get("details", []):
            if int(detail.get("vout", -1)) == out.vout:
                category = str(detail.get("category", category))
        self._update(
            out,
            replace(
                out,
                confirmations=confirmations,
                blockhash=tx.get("blockhash"),
                category=category,
                final=confirmations >= self._track,
            ),
        )

    def _update(self, previous: WalletOutput | None, out: WalletOutput) -> None:
        if previous is not None and (
            previous.confirmations,
            previous.blockhash,
            previous.category,
        ) == (out.confirmations, out.blockhash, out.category):
            return
        if previous is not None and previous.confirmations > 0 and out.confirmations == 0:
            self._bus.publish(
                "tx_removed",
                {**_output_event(previous), "reason": "reorg", "back_in_mempool": True},
            )
        self._store.upsert_output(out)
        self._changed(out.address)
        self._bus.publish("wallet_tx", _output_event(out))

    def _remove(self, txid: str, vout: int, reason: str) -> None:
        previous = self._store.get_output(txid, vout)
        if previous is None or (previous.confirmations < 0 and previous.final):
            return
        gone = replace(previous, confirmations=-1, blockhash=None, final=True)
        self._store.upsert_output(gone)
        self._changed(previous.address)
        self._bus.publish(
            "tx_removed", {**_output_event(previous), "reason": reason, "back_in_mempool": False}
        )


def _output_event(out: WalletOutput) -> dict[str, Any]:
    return {
        "txid": out.txid,
        "vout": out.vout,
        "address": out.address,
        "label": out.label,
        "category": out.category,
        "amount_sats": out.amount_sats,
        "confirmations": out.confirmations,
        "blockhash": out.blockhash,
    }
