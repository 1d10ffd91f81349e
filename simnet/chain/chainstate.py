"""The simulated block chain: block index, active chain, UTXO set, mempool, reorgs.

Blocks and transactions are real serialized objects (python-bitcoinlib); proof of work is real
but at the regtest target, so "mining" is two or three hashes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bitcoin.core import CBlock, CTransaction
from bitcoin.core.script import SIGVERSION_BASE, SIGVERSION_WITNESS_V0, CScript, SignatureHash

from simnet.chain import blocks as blk
from simnet.chain.crypto import hash160, p2pkh_script, verify_digest
from simnet.chain.errors import (
    RPC_DESERIALIZATION_ERROR,
    RPC_VERIFY_ALREADY_IN_CHAIN,
    RPC_VERIFY_ERROR,
    RPC_VERIFY_REJECTED,
    RPCError,
)
from simnet.chain.params import ChainParams

COINBASE_MATURITY = 100
MIN_RELAY_FEE_PER_KVB = 1000  # sats per 1000 vbytes
Outpoint = tuple[bytes, int]


@dataclass
class Coin:
    value: int
    script: bytes
    height: int
    coinbase: bool


@dataclass
class BlockEntry:
    hash: bytes  # internal byte order
    block: CBlock
    raw: bytes
    height: int
    chainwork: int
    seq: int
    received: int
    invalid: bool = False
    undo: list[tuple[Outpoint, Coin]] | None = None

    @property
    def hex_hash(self) -> str:
        return self.hash[::-1].hex()

    @property
    def prev(self) -> bytes:
        return bytes(self.block.hashPrevBlock)


@dataclass
class MempoolEntry:
    tx: CTransaction
    raw: bytes
    txid: bytes
    time: int
    height: int
    fee: int
    vsize: int
    weight: int
    prevouts: list[Coin]
    unbroadcast: bool = True

    @property
    def replaceable(self) -> bool:
        return any(txin.nSequence < 0xFFFFFFFE for txin in self.tx.vin)


@dataclass
class ChainEvent:
    """What ZMQ and the wallets hear: kind is tx, connected, disconnected, added, removed, tip."""

    kind: str
    txid: bytes = b""
    raw: bytes = b""
    block: BlockEntry | None = None
    mempool_seq: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def hexid(h: bytes) -> str:
    return h[::-1].hex()


def unhexid(text: str) -> bytes:
    return bytes.fromhex(text)[::-1]


class ChainState:
    """One node's view of one chain."""

    def __init__(self, params: ChainParams) -> None:
        self.params = params
        self.index: dict[bytes, BlockEntry] = {}
        self.active: list[bytes] = []
        self.utxo: dict[Outpoint, Coin] = {}
        self.by_script: dict[bytes, set[Outpoint]] = {}
        self.tx_block: dict[bytes, tuple[bytes, int]] = {}
        self.spent_by: dict[Outpoint, bytes] = {}  # confirmed spends on the active chain
        self.prevouts: dict[bytes, list[Coin]] = {}
        self.mempool: dict[bytes, MempoolEntry] = {}
        self.mempool_spends: dict[Outpoint, bytes] = {}
        self.mempool_seq = 1
        self.fee_deltas: dict[bytes, int] = {}  # prioritisetransaction (sats), kept until mined
        self.prune_height = 0
        self.listeners: list[Callable[[ChainEvent], None]] = []
        self._seq = 0
        genesis = params.genesis
        raw = genesis.serialize()
        entry = BlockEntry(
            bytes(genesis.GetHash()),
            genesis,
            raw,
            0,
            blk.block_work(genesis.nBits),
            0,
            genesis.nTime,
        )
        entry.undo = []
        self.index[entry.hash] = entry
        self.active.append(entry.hash)
        # The genesis output is not spendable (as in Core): not added to the UTXO set.

    # --- queries -----------------------------------------------------------------------------

    @property
    def tip(self) -> BlockEntry:
        return self.index[self.active[-1]]

    @property
    def height(self) -> int:
        return len(self.active) - 1

    def at_height(self, height: int) -> BlockEntry:
        return self.index[self.active[height]]

    def in_active(self, entry: BlockEntry) -> bool:
        return entry.height < len(self.active) and self.active[entry.height] == entry.hash

    def median_time_past(self, entry: BlockEntry) -> int:
        times: list[int] = []
        cur: BlockEntry | None = entry
        while cur is not None and len(times) < 11:
            times.append(cur.block.nTime)
            cur = self.index.get(cur.prev) if cur.height > 0 else None
        times.sort()
        return int(times[len(times) // 2])

    def confirmations(self, entry: BlockEntry) -> int:
        return self.height - entry.height + 1 if self.in_active(entry) else -1

    def emit(self, event: ChainEvent) -> None:
        for listener in self.listeners:
            listener(event)

    def coin_view(self, outpoint: Outpoint) -> Coin | None:
        """A coin from the UTXO set or an unconfirmed mempool output (height -1)."""
        coin = self.utxo.get(outpoint)
        if coin is not None:
            return coin
        parent = self.mempool.get(outpoint[0])
        if parent is not None and outpoint[1] < len(parent.tx.vout):
            out = parent.tx.vout[outpoint[1]]
            return Coin(out.nValue, bytes(out.scriptPubKey), -1, False)
        return None

    # --- UTXO bookkeeping --------------------------------------------------------------------

    def _add_coin(self, outpoint: Outpoint, coin: Coin) -> None:
        self.utxo[outpoint] = coin
        self.by_script.setdefault(coin.script, set()).add(outpoint)

    def _spend_coin(self, outpoint: Outpoint) -> Coin:
        coin = self.utxo.pop(outpoint)
        refs = self.by_script.get(coin.script)
        if refs is not None:
            refs.discard(outpoint)
            if not refs:
                del self.by_script[coin.script]
        return coin

    # --- block connection --------------------------------------------------------------------

    def add_block(self, block: CBlock, received: int | None = None) -> BlockEntry:
        """Put a block in the index (not yet active). Its parent must be known."""
        h = bytes(block.GetHash())
        if h in self.index:
            return self.index[h]
        parent = self.index.get(bytes(block.hashPrevBlock))
        if parent is None:
            raise RPCError(RPC_VERIFY_ERROR, "prev-blk-not-found")
        if int.from_bytes(h, "little") > blk.target_of(block.nBits):
            raise RPCError(RPC_VERIFY_ERROR, "high-hash")
        self._seq += 1
        entry = BlockEntry(
            h,
            block,
            block.serialize(),
            parent.height + 1,
            parent.chainwork + blk.block_work(block.nBits),
            self._seq,
            received if received is not None else int(time.time()),
            invalid=parent.invalid,
        )
        self.index[h] = entry
        return entry

    def _connect(self, entry: BlockEntry) -> bool:
        height = entry.height
        undo: list[tuple[Outpoint, Coin]] = []
        created: list[Outpoint] = []
        fees = 0
        ok = True
        for i, tx in enumerate(entry.block.vtx):
            txid = bytes(tx.GetTxid())
            coins: list[Coin] = []
            if i > 0:
                for txin in tx.vin:
                    op = (bytes(txin.prevout.hash), txin.prevout.n)
                    coin = self.utxo.get(op)
                    if coin is None or (coin.coinbase and height - coin.height < COINBASE_MATURITY):
                        ok = False
                        break
                    undo.append((op, self._spend_coin(op)))
                    self.spent_by[op] = txid
                    coins.append(coin)
                if not ok:
                    break
                fees += sum(c.value for c in coins) - sum(o.nValue for o in tx.vout)
            for n, out in enumerate(tx.vout):
                script = bytes(out.scriptPubKey)
                if script[:1] == b"\x6a":
                    continue
                self._add_coin((txid, n), Coin(out.nValue, script, height, i == 0))
                created.append((txid, n))
            self.prevouts[txid] = coins
            self.tx_block[txid] = (entry.hash, i)
        if ok and entry.block.vtx:
            reward = sum(o.nValue for o in entry.block.vtx[0].vout)
            ok = reward <= self.params.block_subsidy(height) + fees
        if not ok:
            for op in created:
                if op in self.utxo:
                    self._spend_coin(op)
            for op, coin in reversed(undo):
                self._add_coin(op, coin)
                self.spent_by.pop(op, None)
            for tx in entry.block.vtx:
                self.tx_block.pop(bytes(tx.GetTxid()), None)
            return False
        entry.undo = undo
        self.active.append(entry.hash)
        for tx in entry.block.vtx:
            self.emit(ChainEvent("tx", bytes(tx.GetTxid()), tx.serialize()))
        self.emit(ChainEvent("connected", block=entry))
        # Mempool: drop what the block confirmed (no "R") and what it conflicts with ("R").
        for tx in entry.block.vtx[1:]:
            txid = bytes(tx.GetTxid())
            self.fee_deltas.pop(txid, None)  # Core clears a mined transaction's priority
            if txid in self.mempool:
                self._remove_mempool(txid, by_block=True)
            for txin in tx.vin:
                op = (bytes(txin.prevout.hash), txin.prevout.n)
                rival = self.mempool_spends.get(op)
                if rival is not None:
                    self._remove_mempool_tree(rival)
        return True

    def _disconnect_tip(self) -> list[CTransaction]:
        entry = self.tip
        assert entry.undo is not None
        for i, tx in enumerate(entry.block.vtx):
            txid = bytes(tx.GetTxid())
            for n in range(len(tx.vout)):
                if (txid, n) in self.utxo:
                    self._spend_coin((txid, n))
            self.tx_block.pop(txid, None)
            if i == 0:
                self.prevouts.pop(txid, None)
        for op, coin in reversed(entry.undo):
            self._add_coin(op, coin)
            self.spent_by.pop(op, None)
        entry.undo = None
        self.active.pop()
        for tx in entry.block.vtx:
            self.emit(ChainEvent("tx", bytes(tx.GetTxid()), tx.serialize()))
        self.emit(ChainEvent("disconnected", block=entry))
        return list(entry.block.vtx[1:])

    def _readd(self, txs: list[CTransaction]) -> None:
        for tx in txs:
            try:
                self.accept_tx(tx, from_reorg=True)
            except RPCError:
                self.prevouts.pop(bytes(tx.GetTxid()), None)

    def _best_candidate(self) -> BlockEntry:
        best = self.tip
        for entry in self.index.values():
            if entry.invalid:
                continue
            if entry.chainwork > best.chainwork or (
                entry.chainwork == best.chainwork
                and entry.seq < best.seq
                and not self.in_active(best)
            ):
                best = entry
        return best

    def activate_best_chain(self, per_block_readd: bool = False) -> None:
        """Move the active chain to the valid block with the most work (Core's rule)."""
        before = self.tip.hash
        while True:
            best = self._best_candidate()
            if best.hash == self.tip.hash:
                if self.tip.hash != before:
                    self.emit(ChainEvent("tip", block=self.tip))
                return
            path: list[BlockEntry] = []
            cur = best
            while not self.in_active(cur):
                path.append(cur)
                cur = self.index[cur.prev]
            fork_height = cur.height
            pool: list[CTransaction] = []
            while self.height > fork_height:
                removed = self._disconnect_tip()
                if per_block_readd:
                    self._readd(removed)
                else:
                    pool = removed + pool
            failed = False
            for entry in reversed(path):
                if not self._connect(entry):
                    self._mark_invalid(entry)
                    failed = True
                    break
            self._readd([tx for tx in pool if bytes(tx.GetTxid()) not in self.tx_block])
            self._evict_orphans()
            if not failed and self.tip.hash == best.hash:
                if self.tip.hash != before:
                    self.emit(ChainEvent("tip", block=self.tip))
                return

    def _mark_invalid(self, entry: BlockEntry) -> None:
        entry.invalid = True
        changed = True
        while changed:
            changed = False
            for other in self.index.values():
                if not other.invalid and other.height > 0 and self.index[other.prev].invalid:
                    other.invalid = True
                    changed = True

    def invalidate(self, entry: BlockEntry) -> None:
        """invalidateblock: disconnect down to the parent, one block at a time (as Core)."""
        if self.in_active(entry):
            while self.height >= entry.height:
                self._readd(self._disconnect_tip())
            self._evict_orphans()
        self._mark_invalid(entry)
        self.activate_best_chain()

    def reconsider(self, entry: BlockEntry) -> None:
        for other in self.index.values():
            cur: BlockEntry | None = other
            while cur is not None and cur.height >= entry.height:
                if cur.hash == entry.hash:
                    other.invalid = False
                    break
                cur = self.index.get(cur.prev)
        cur = self.index.get(entry.prev)
        while cur is not None and cur.invalid:
            cur.invalid = False
            cur = self.index.get(cur.prev) if cur.height > 0 else None
        self.activate_best_chain()

    def submit_block(self, block: CBlock, received: int | None = None) -> BlockEntry:
        entry = self.add_block(block, received)
        self.activate_best_chain()
        return entry

    # --- mining ------------------------------------------------------------------------------

    def modified_fee(self, txid: bytes) -> int:
        """The fee with prioritisetransaction's delta: what block assembly ranks by."""
        return self.mempool[txid].fee + self.fee_deltas.get(txid, 0)

    def block_template(self) -> list[CTransaction]:
        # as Core's BlockAssembler: a transaction whose modified fee rate is below
        # -blockmintxfee (1 sat/vB up to v29, 0.001 sat/vB from v30) is left out, and so are
        # its descendants
        min_per_kvb = 1 if self.params.v30 else 1000
        chosen: list[CTransaction] = []
        have: set[bytes] = set()
        for txid, entry in self.mempool.items():
            if self.modified_fee(txid) * 1000 < min_per_kvb * entry.vsize:
                continue
            if all(
                (bytes(i.prevout.hash), i.prevout.n) in self.utxo or bytes(i.prevout.hash) in have
                for i in entry.tx.vin
            ):
                chosen.append(entry.tx)
                have.add(txid)
        return chosen

    def next_block_time(self) -> int:
        return max(self.median_time_past(self.tip) + 1, int(time.time()))

    def mine(
        self,
        script: bytes,
        txs: list[CTransaction] | None = None,
        nonce_tag: bytes = b"",
        payouts: list[tuple[bytes, int]] | None = None,
    ) -> BlockEntry:
        """Mine one block on the tip paying `payouts` and the rest of the reward to `script`."""
        txs = self.block_template() if txs is None else txs
        height = self.height + 1
        fees = 0
        for tx in txs:
            coins = self.prevouts.get(bytes(tx.GetTxid()))
            if coins is None:
                coins = [
                    c
                    for c in (self.coin_view((bytes(i.prevout.hash), i.prevout.n)) for i in tx.vin)
                    if c is not None
                ]
            fees += sum(c.value for c in coins) - sum(o.nValue for o in tx.vout)
        reward = self.params.block_subsidy(height) + fees
        if payouts and sum(v for _, v in payouts) > reward:
            raise RPCError(
                RPC_VERIFY_ERROR, f"coinbase payouts exceed the block reward ({reward} sats)"
            )
        coinbase = blk.make_coinbase(height, script, reward, txs, nonce_tag, payouts)
        block = blk.build_block(
            self.tip.hash, height, self.next_block_time(), self.tip.block.nBits, coinbase, txs
        )
        entry = self.add_block(block)
        self.activate_best_chain()
        if not self.in_active(entry):
            raise RPCError(RPC_VERIFY_ERROR, "bad-txns-inputs-missingorspent")
        return entry

    # --- mempool -----------------------------------------------------------------------------

    def check_tx(self, tx: CTransaction, *, from_reorg: bool = False) -> MempoolEntry:
        """Validate `tx` against the UTXO set and mempool, as testmempoolaccept would."""
        txid = bytes(tx.GetTxid())
        if not tx.vin or not tx.vout:
            raise RPCError(
                RPC_VERIFY_REJECTED, "bad-txns-vin-empty" if not tx.vin else "bad-txns-vout-empty"
            )
        if tx.is_coinbase():
            raise RPCError(RPC_VERIFY_REJECTED, "coinbase")
        coins: list[Coin] = []
        spend_height = self.height + 1
        for i, txin in enumerate(tx.vin):
            op = (bytes(txin.prevout.hash), txin.prevout.n)
            coin = self.coin_view(op)
            if coin is None:
                if any((txid, n) in self.utxo for n in range(len(tx.vout))):
                    raise RPCError(
                        RPC_VERIFY_ALREADY_IN_CHAIN, "Transaction outputs already in utxo set"
                    )
                raise RPCError(RPC_VERIFY_ERROR, "bad-txns-inputs-missingorspent")
            if coin.coinbase and spend_height - coin.height < COINBASE_MATURITY:
                raise RPCError(RPC_VERIFY_REJECTED, "bad-txns-premature-spend-of-coinbase")
            if not from_reorg and not _input_signature_ok(tx, i, coin):
                raise RPCError(
                    RPC_VERIFY_REJECTED,
                    "mandatory-script-verify-flag-failed (Signature must be zero for failed "
                    "CHECK(MULTI)SIG operation)",
                )
            coins.append(coin)
        value_in = sum(c.value for c in coins)
        value_out = sum(o.nValue for o in tx.vout)
        if value_out > value_in:
            raise RPCError(RPC_VERIFY_REJECTED, "bad-txns-in-belowout")
        fee = value_in - value_out
        vsize = blk.tx_vsize(tx)
        if fee * 1000 < MIN_RELAY_FEE_PER_KVB * vsize and not from_reorg:
            raise RPCError(RPC_VERIFY_REJECTED, "min relay fee not met")
        return MempoolEntry(
            tx,
            tx.serialize(),
            txid,
            int(time.time()),
            self.height,
            fee,
            vsize,
            blk.tx_weight(tx),
            coins,
        )

    def conflicts_of(self, tx: CTransaction) -> set[bytes]:
        return {
            rival
            for txin in tx.vin
            if (rival := self.mempool_spends.get((bytes(txin.prevout.hash), txin.prevout.n)))
        }

    def accept_tx(
        self, tx: CTransaction, *, from_reorg: bool = False, allow_replace: bool | None = None
    ) -> MempoolEntry:
        """Add `tx` to the mempool (replacing conflicts by fee, full-RBF on v30)."""
        txid = bytes(tx.GetTxid())
        if txid in self.mempool:
            return self.mempool[txid]
        if txid in self.tx_block:
            raise RPCError(RPC_VERIFY_ALREADY_IN_CHAIN, "Transaction outputs already in utxo set")
        rivals = self.conflicts_of(tx)
        entry = self.check_tx(tx, from_reorg=from_reorg)
        if rivals:
            rival_entries = [self.mempool[r] for r in rivals]
            full_rbf = self.params.v30 if allow_replace is None else allow_replace
            if not full_rbf and not all(r.replaceable for r in rival_entries):
                raise RPCError(RPC_VERIFY_REJECTED, "txn-mempool-conflict")
            if entry.fee <= sum(r.fee for r in rival_entries) + entry.vsize:
                raise RPCError(RPC_VERIFY_REJECTED, "insufficient fee")
            for rival in rivals:
                self._remove_mempool_tree(rival)
        self.mempool[txid] = entry
        self.prevouts[txid] = entry.prevouts
        for txin in tx.vin:
            self.mempool_spends[(bytes(txin.prevout.hash), txin.prevout.n)] = txid
        seq = self.mempool_seq
        self.mempool_seq += 1
        self.emit(ChainEvent("tx", txid, entry.raw))
        self.emit(ChainEvent("added", txid, entry.raw, mempool_seq=seq))
        return entry

    def _remove_mempool(self, txid: bytes, by_block: bool = False) -> None:
        entry = self.mempool.pop(txid)
        for txin in entry.tx.vin:
            op = (bytes(txin.prevout.hash), txin.prevout.n)
            if self.mempool_spends.get(op) == txid:
                del self.mempool_spends[op]
        seq = self.mempool_seq
        self.mempool_seq += 1
        if not by_block:
            self.emit(ChainEvent("removed", txid, entry.raw, mempool_seq=seq))

    def _remove_mempool_tree(self, txid: bytes) -> None:
        entry = self.mempool.get(txid)
        if entry is None:
            return
        for n in range(len(entry.tx.vout)):
            child = self.mempool_spends.get((txid, n))
            if child is not None:
                self._remove_mempool_tree(child)
        self._remove_mempool(txid)

    def remove_from_mempool(self, txid: bytes) -> None:
        self._remove_mempool_tree(txid)

    def _evict_orphans(self) -> None:
        changed = True
        while changed:
            changed = False
            for txid, entry in list(self.mempool.items()):
                if txid not in self.mempool:
                    continue
                for txin in entry.tx.vin:
                    op = (bytes(txin.prevout.hash), txin.prevout.n)
                    coin = self.coin_view(op)
                    if coin is None or (
                        coin.coinbase and self.height + 1 - coin.height < COINBASE_MATURITY
                    ):
                        self._remove_mempool_tree(txid)
                        changed = True
                        break

    # --- pruning -----------------------------------------------------------------------------

    def is_pruned(self, entry: BlockEntry) -> bool:
        return entry.height < self.prune_height and self.in_active(entry)

    def size_on_disk(self) -> int:
        return 293 + sum(
            len(e.raw) for e in self.index.values() if e.height > 0 and not self.is_pruned(e)
        )

    # --- persistence -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        ordered = sorted((e for e in self.index.values() if e.height > 0), key=lambda e: e.seq)
        return {
            "blocks": [[e.raw.hex(), e.received] for e in ordered],
            "invalid": [e.hex_hash for e in ordered if e.invalid],
            "mempool": [[m.raw.hex(), m.time] for m in self.mempool.values()],
            "mempool_seq": self.mempool_seq,
            "prune_height": self.prune_height,
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Rebuild from a snapshot (listeners are attached afterwards, so no events escape)."""
        for raw_hex, received in data.get("blocks", []):
            block = CBlock.deserialize(bytes.fromhex(raw_hex))
            try:
                self.add_block(block, received)
            except RPCError:
                continue
        for h in data.get("invalid", []):
            entry = self.index.get(unhexid(h))
            if entry is not None:
                self._mark_invalid(entry)
        self.activate_best_chain()
        for raw_hex, received in data.get("mempool", []):
            try:
                pooled = self.accept_tx(
                    CTransaction.deserialize(bytes.fromhex(raw_hex)), from_reorg=True
                )
                pooled.time = received
            except RPCError:
                continue
        self.mempool_seq = max(self.mempool_seq, int(data.get("mempool_seq", 1)))
        self.prune_height = int(data.get("prune_height", 0))


def decode_tx(hexstr: str) -> CTransaction:
    try:
        tx = CTransaction.deserialize(bytes.fromhex(hexstr))
    except Exception as exc:  # any malformed input is Core's one decode error
        raise RPCError(
            RPC_DESERIALIZATION_ERROR, "TX decode failed. Make sure the tx has at least one input."
        ) from exc
    return tx


def _input_signature_ok(tx: CTransaction, index: int, coin: Coin) -> bool:
    """Verify P2WPKH and P2PKH spends; other script types are accepted unverified (README)."""
    script = coin.script
    try:
        if len(script) == 22 and script[:2] == b"\x00\x14":
            wit = tx.wit.vtxinwit[index].scriptWitness.stack if tx.wit.vtxinwit else []
            if len(wit) != 2 or hash160(bytes(wit[1])) != script[2:]:
                return False
            sig, pub = bytes(wit[0]), bytes(wit[1])
            digest = SignatureHash(
                CScript(p2pkh_script(script[2:])),
                tx,
                index,
                sig[-1],
                coin.value,
                SIGVERSION_WITNESS_V0,
            )
            return verify_digest(pub, digest, sig[:-1])
        if len(script) == 25 and script[:3] == b"\x76\xa9\x14":
            parts = list(tx.vin[index].scriptSig)
            if len(parts) != 2:
                return False
            sig, pub = bytes(parts[0]), bytes(parts[1])
            if hash160(pub) != script[3:23]:
                return False
            digest = SignatureHash(CScript(script), tx, index, sig[-1], coin.value, SIGVERSION_BASE)
            return verify_digest(pub, digest, sig[:-1])
    except (IndexError, ValueError, TypeError):
        return False
    return True
