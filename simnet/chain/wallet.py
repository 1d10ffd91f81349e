"""A descriptor wallet: BIP84 keys (m/84h/<coin>h/0h/{0,1}/i), labels, imported descriptors,
the wallet's transactions, balances, coin selection, signing and sends.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from bitcoin.core import (
    CMutableTransaction,
    CMutableTxIn,
    CMutableTxOut,
    COutPoint,
    CTransaction,
    CTxInWitness,
    CTxWitness,
)
from bitcoin.core.script import (
    SIGHASH_ALL,
    SIGVERSION_BASE,
    SIGVERSION_WITNESS_V0,
    CScript,
    CScriptWitness,
    SignatureHash,
)

from simnet.chain.chainstate import COINBASE_MATURITY, ChainEvent, ChainState, Coin, hexid
from simnet.chain.crypto import (
    HARDENED,
    ExtKey,
    format_path,
    hash160,
    p2pkh_script,
    p2wpkh_script,
    segwit_address,
    sign_digest,
    with_checksum,
)
from simnet.chain.descriptors import DescScript, parse_descriptor
from simnet.chain.errors import RPC_WALLET_ERROR, RPC_WALLET_INSUFFICIENT_FUNDS, RPCError

LOOKAHEAD = 20
DUST_CHANGE = 1000  # sats: smaller change goes to the fee, as Core's cost-of-change rule does


@dataclass
class KeyInfo:
    script: bytes
    pubkey: bytes | None
    secret: bytes | None
    desc: str
    parent_desc: str | None
    path: str | None
    internal: bool
    chain_index: tuple[int, int] | None = None  # (0|1, i) for the wallet's own HD keys


@dataclass
class WalletTx:
    txid: bytes
    raw: bytes
    time: int
    debit: int  # sats of the wallet's coins this tx spends
    value_in: int | None  # all inputs' value if known (for the fee)
    coinbase: bool
    order: int
    abandoned: bool = False
    comments: dict[str, str] = field(default_factory=dict)  # Core's mapValue: comment, to

    @cached_property
    def tx(self) -> CTransaction:
        return CTransaction.deserialize(self.raw)


@dataclass
class Wallet:
    """One loaded wallet. State is saved to `<walletdir>/<name>/wallet.dat` (JSON)."""

    name: str
    path: Path
    chain: ChainState
    seed: bytes | None
    birthtime: int
    next_index: list[int] = field(default_factory=lambda: [0, 0])
    labels: dict[str, str] = field(default_factory=dict)
    imported: list[dict[str, Any]] = field(default_factory=list)
    txs: dict[bytes, WalletTx] = field(default_factory=dict)
    keys: dict[bytes, KeyInfo] = field(default_factory=dict)
    private_keys_enabled: bool = True
    blank: bool = False
    _account: ExtKey | None = None
    _chains: list[ExtKey] = field(default_factory=list)
    _order: int = 0

    # --- construction / persistence ----------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str,
        path: Path,
        chain: ChainState,
        blank: bool = False,
        disable_private_keys: bool = False,
    ) -> Wallet:
        seed = None if (blank or disable_private_keys) else os.urandom(32)
        wallet = cls(name, path, chain, seed, int(time.time()))
        wallet.blank = blank
        wallet.private_keys_enabled = not disable_private_keys
        wallet._setup()
        return wallet

    @classmethod
    def load(cls, name: str, path: Path, chain: ChainState) -> Wallet:
        data = json.loads((path / "wallet.dat").read_text())
        return cls.from_backup(name, path, chain, data)

    @classmethod
    def from_backup(cls, name: str, path: Path, chain: ChainState, data: dict[str, Any]) -> Wallet:
        wallet = cls(
            name,
            path,
            chain,
            bytes.fromhex(data["seed"]) if data.get("seed") else None,
            int(data["birthtime"]),
        )
        wallet.next_index = list(data.get("next_index", [0, 0]))
        wallet.labels = dict(data.get("labels", {}))
        wallet.imported = list(data.get("imported", []))
        wallet.private_keys_enabled = bool(data.get("private_keys_enabled", True))
        wallet.blank = bool(data.get("blank", False))
        wallet._setup()
        for item in data.get("txs", []):
            wallet.txs[bytes.fromhex(item["txid"])] = WalletTx(
                bytes.fromhex(item["txid"]),
                bytes.fromhex(item["raw"]),
                item["time"],
                item["debit"],
                item["value_in"],
                item["coinbase"],
                item["order"],
                item.get("abandoned", False),
                dict(item.get("comments", {})),
            )
            wallet._order = max(wallet._order, item["order"] + 1)
        wallet.rescan()
        return wallet

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "simnet-wallet-1",
            "seed": self.seed.hex() if self.seed else None,
            "birthtime": self.birthtime,
            "next_index": self.next_index,
            "labels": self.labels,
            "imported": self.imported,
            "private_keys_enabled": self.private_keys_enabled,
            "blank": self.blank,
            "txs": [
                {
                    "txid": t.txid.hex(),
                    "raw": t.raw.hex(),
                    "time": t.time,
                    "debit": t.debit,
                    "value_in": t.value_in,
                    "coinbase": t.coinbase,
                    "order": t.order,
                    "abandoned": t.abandoned,
                    "comments": t.comments,
                }
                for t in self.txs.values()
            ],
        }

    def save(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / "wallet.dat.tmp"
        tmp.write_text(json.dumps(self.to_json()))
        tmp.replace(self.path / "wallet.dat")

    def _setup(self) -> None:
        params = self.chain.params
        if self.seed is not None:
            master = ExtKey.from_seed(self.seed)
            self._account = master.derive_path(
                [84 + HARDENED, params.coin_type + HARDENED, HARDENED]
            )
            self._chains = [self._account.derive(0), self._account.derive(1)]
            self._master_fp = master.fingerprint
            for internal in (0, 1):
                self._extend(internal)
        for item in self.imported:
            self._add_descriptor_keys(item)

    @property
    def marker(self) -> str:
        return "h" if self.chain.params.v30 else "'"

    def parent_desc(self, internal: int) -> str:
        assert self._account is not None
        path = format_path(
            [84 + HARDENED, self.chain.params.coin_type + HARDENED, HARDENED], self.marker
        )
        xpub = self._account.xpub(self.chain.params.mainnet_keys)
        return with_checksum(f"wpkh([{self._master_fp.hex()}/{path}]{xpub}/{internal}/*)")

    def _extend(self, internal: int) -> None:
        have = sum(1 for k in self.keys.values() if k.chain_index and k.chain_index[0] == internal)
        target = self.next_index[internal] + LOOKAHEAD
        parent = self.parent_desc(internal)
        params = self.chain.params
        for i in range(have, target):
            node = self._chains[internal].derive(i)
            full = [84 + HARDENED, params.coin_type + HARDENED, HARDENED, internal, i]
            path = format_path(full, self.marker)
            desc = with_checksum(f"wpkh([{self._master_fp.hex()}/{path}]{node.pubkey.hex()})")
            script = p2wpkh_script(node.pubkey)
            self.keys[script] = KeyInfo(
                script,
                node.pubkey,
                node.secret,
                desc,
                parent,
                "m/" + path,
                bool(internal),
                (internal, i),
            )

    def _add_descriptor_keys(self, item: dict[str, Any]) -> list[DescScript]:
        desc = parse_descriptor(item["desc"], self.chain.params)
        start, end = item.get("range", [0, 0]) if desc.ranged else (0, 0)
        out: list[DescScript] = []
        for i in range(start, end + 1):
            for ds in desc.expand(i, self.chain.params):
                out.append(ds)
                if ds.script not in self.keys:
                    self.keys[ds.script] = KeyInfo(
                        ds.script,
                        ds.pubkey,
                        ds.secret,
                        ds.desc,
                        with_checksum(desc.public_text(self.chain.params)),
                        None,
                        bool(item.get("internal", False)),
                    )
        return out

    def import_descriptor(self, item: dict[str, Any]) -> None:
        self._add_descriptor_keys(item)
        self.imported.append(item)
        if "label" in item and not item.get("internal"):
            for ds in parse_descriptor(item["desc"], self.chain.params).expand(
                0, self.chain.params
            ):
                addr = self.address_of(ds.script)
                if addr:
                    self.labels[addr] = item["label"]
        self.rescan()

    # --- addresses ---------------------------------------------------------------------------

    def address_of(self, script: bytes) -> str | None:
        from simnet.chain.crypto import script_address

        p = self.chain.params
        return script_address(script, p.hrp, p.p2pkh_version or 0, p.p2sh_version or 5)

    def new_address(self, label: str | None, internal: int = 0) -> str:
        if self.seed is None:
            raise RPCError(RPC_WALLET_ERROR, "Error: This wallet has no available keys")
        index = self.next_index[internal]
        self.next_index[internal] += 1
        self._extend(internal)
        node_script = next(
            k.script for k in self.keys.values() if k.chain_index == (internal, index)
        )
        address = segwit_address(self.chain.params.hrp, node_script)
        assert address is not None
        if not internal:
            self.labels[address] = label or ""
        return address

    def is_mine(self, script: bytes) -> bool:
        return script in self.keys

    def is_change(self, script: bytes) -> bool:
        info = self.keys.get(script)
        if info is None:
            return False
        address = self.address_of(script)
        return address not in self.labels

    def _note_used(self, script: bytes) -> None:
        info = self.keys.get(script)
        if info is not None and info.chain_index is not None:
            internal, i = info.chain_index
            if i >= self.next_index[internal]:
                self.next_index[internal] = i + 1
                self._extend(internal)

    # --- following the chain -----------------------------------------------------------------

    def on_event(self, event: ChainEvent) -> None:
        if event.kind == "added":
            self._consider(CTransaction.deserialize(event.raw), event.txid)
        elif event.kind == "connected" and event.block is not None:
            for tx in event.block.block.vtx:
                self._consider(tx, bytes(tx.GetTxid()), event.block.block.nTime)

    def _consider(self, tx: CTransaction, txid: bytes, when: int | None = None) -> bool:
        mine_out = False
        for out in tx.vout:
            script = bytes(out.scriptPubKey)
            if script in self.keys:
                mine_out = True
                self._note_used(script)
        coins = self.chain.prevouts.get(txid, [])
        debit = sum(c.value for c in coins if c.script in self.keys)
        if not mine_out and debit == 0:
            return False
        if txid not in self.txs:
            self.txs[txid] = WalletTx(
                txid,
                tx.serialize(),
                int(time.time()),
                debit,
                sum(c.value for c in coins) if len(coins) == len(tx.vin) else None,
                tx.is_coinbase(),
                self._order,
            )
            self._order += 1
        else:
            self.txs[txid].abandoned = False
        return True

    def rescan(self) -> None:
        for h in self.chain.active[1:]:
            entry = self.chain.index[h]
            for tx in entry.block.vtx:
                self._consider(tx, bytes(tx.GetTxid()), entry.block.nTime)
        for txid, m in self.chain.mempool.items():
            self._consider(m.tx, txid)

    # --- state of a wallet tx ----------------------------------------------------------------

    def depth(self, wtx: WalletTx) -> int:
        """Confirmations; negative (as Core) when a confirmed transaction spent its inputs."""
        chain = self.chain
        loc = chain.tx_block.get(wtx.txid)
        if loc is not None:
            return chain.height - chain.index[loc[0]].height + 1
        if wtx.coinbase or wtx.txid in chain.mempool:
            return 0
        deepest = 0
        for txin in wtx.tx.vin:
            spender = chain.spent_by.get((bytes(txin.prevout.hash), txin.prevout.n))
            if spender is not None and spender != wtx.txid and spender in chain.tx_block:
                block = chain.index[chain.tx_block[spender][0]]
                deepest = max(deepest, chain.height - block.height + 1)
        return -deepest

    def conflicts(self, wtx: WalletTx) -> tuple[list[bytes], list[bytes]]:
        """(wallet transactions, mempool transactions) spending an input of `wtx`."""
        if wtx.coinbase:
            return [], []
        ops = {(bytes(i.prevout.hash), i.prevout.n) for i in wtx.tx.vin}
        in_wallet = [
            other.txid
            for other in self.txs.values()
            if other.txid != wtx.txid
            and not other.coinbase
            and any((bytes(i.prevout.hash), i.prevout.n) in ops for i in other.tx.vin)
        ]
        in_pool = sorted(
            {
                rival
                for op in ops
                if (rival := self.chain.mempool_spends.get(op)) is not None and rival != wtx.txid
            }
        )
        return in_wallet, in_pool

    def in_mempool(self, wtx: WalletTx) -> bool:
        return wtx.txid in self.chain.mempool

    def credit(self, wtx: WalletTx) -> int:
        return sum(o.nValue for o in wtx.tx.vout if bytes(o.scriptPubKey) in self.keys)

    def fee(self, wtx: WalletTx) -> int | None:
        if wtx.debit == 0 or wtx.value_in is None or wtx.debit != wtx.value_in:
            return None
        return int(wtx.value_in - sum(o.nValue for o in wtx.tx.vout))

    def trusted(self, wtx: WalletTx) -> bool:
        d = self.depth(wtx)
        if d >= 1:
            return True
        return self.in_mempool(wtx) and wtx.debit > 0

    # --- balances and coins ------------------------------------------------------------------

    def spendable_coins(
        self, min_conf: int = 0, include_untrusted: bool = False
    ) -> list[tuple[tuple[bytes, int], Coin]]:
        chain = self.chain
        out: list[tuple[tuple[bytes, int], Coin]] = []
        for script in self.keys:
            if self.keys[script].secret is None:
                continue
            for op in chain.by_script.get(script, ()):
                coin = chain.utxo[op]
                if op in chain.mempool_spends:
                    continue
                depth = chain.height - coin.height + 1
                if coin.coinbase and depth < COINBASE_MATURITY + 1:
                    continue
                if depth >= min_conf:
                    out.append((op, coin))
        if min_conf == 0:
            for txid, m in chain.mempool.items():
                wtx = self.txs.get(txid)
                from_me = wtx is not None and wtx.debit > 0
                if not from_me and not include_untrusted:
                    continue
                for n, o in enumerate(m.tx.vout):
                    script = bytes(o.scriptPubKey)
                    info = self.keys.get(script)
                    if info is None or info.secret is None or (txid, n) in chain.mempool_spends:
                        continue
                    out.append(((txid, n), Coin(o.nValue, script, -1, False)))
        return out

    def balances(self) -> dict[str, int]:
        chain = self.chain
        utxo, spends, by_script = chain.utxo, chain.mempool_spends, chain.by_script
        mature_below = chain.height + 1 - (COINBASE_MATURITY + 1)
        trusted = pending = immature = 0
        for script in self.keys:
            for op in by_script.get(script, ()):
                if op in spends:
                    continue
                coin = utxo[op]
                if coin.coinbase and coin.height > mature_below:
                    immature += coin.value
                else:
                    trusted += coin.value
        for txid, m in chain.mempool.items():
            wtx = self.txs.get(txid)
            from_me = wtx is not None and wtx.debit > 0
            for n, o in enumerate(m.tx.vout):
                if bytes(o.scriptPubKey) in self.keys and (txid, n) not in chain.mempool_spends:
                    if from_me:
                        trusted += o.nValue
                    else:
                        pending += o.nValue
        return {"trusted": trusted, "untrusted_pending": pending, "immature": immature}

    # --- building, signing, sending ----------------------------------------------------------

    def sign(
        self,
        tx: CMutableTransaction,
        coins: list[Coin | None],
        extra: dict[bytes, tuple[bytes, bytes]] | None = None,
    ) -> list[int]:
        """Sign every input we hold a key for; return indexes left unsigned."""
        return sign_inputs(tx, coins, self.signing_keys() | (extra or {}))

    def signing_keys(self) -> dict[bytes, tuple[bytes, bytes]]:
        return {
            s: (k.secret, k.pubkey)
            for s, k in self.keys.items()
            if k.secret is not None and k.pubkey is not None
        }

    def create_transaction(
        self,
        outputs: list[tuple[bytes, int]],
        fee_rate: int,
        subtract_fee_from: set[int],
        replaceable: bool,
        insufficient_code: int = RPC_WALLET_INSUFFICIENT_FUNDS,
    ) -> CTransaction:
        """Fund, add change and sign a transaction paying `outputs` at `fee_rate` sat/vB."""
        if not self.private_keys_enabled:
            raise RPCError(RPC_WALLET_ERROR, "Error: Private keys are disabled for this wallet")
        coins = sorted(self.spendable_coins(), key=lambda oc: (-oc[1].value, oc[0]))
        target = sum(v for _, v in outputs)
        out_weight = sum(4 * (9 + len(s)) for s, _ in outputs)

        def fee_for(n_in: int, with_change: bool) -> int:
            weight = (
                4 * (10 + 41 * n_in) + out_weight + (4 * 31 if with_change else 0) + 2 + 108 * n_in
            )
            return fee_rate * ((weight + 3) // 4)

        chosen: list[tuple[tuple[bytes, int], Coin]] = []
        total = 0
        change = 0
        fee = 0
        funded = False
        for oc in coins:
            chosen.append(oc)
            total += oc[1].value
            need = target if subtract_fee_from else target + fee_for(len(chosen), True)
            if total >= need:
                funded = True
                break
        if not funded or not chosen:
            raise RPCError(insufficient_code, "Insufficient funds")
        fee = fee_for(len(chosen), True)
        change = total - target - (0 if subtract_fee_from else fee)
        if change < DUST_CHANGE:
            fee = fee_for(len(chosen), False)
            change = 0
            if not subtract_fee_from:
                fee = total - target
        amounts = [v for _, v in outputs]
        if subtract_fee_from:
            share, rest = divmod(fee, len(subtract_fee_from))
            for k, i in enumerate(sorted(subtract_fee_from)):
                amounts[i] -= share + (rest if k == 0 else 0)
                if amounts[i] <= 0:
                    raise RPCError(
                        RPC_WALLET_ERROR, "The transaction amount is too small to pay the fee"
                    )
        vout = [CMutableTxOut(v, CScript(s)) for (s, _), v in zip(outputs, amounts, strict=True)]
        if change:
            change_address = self.new_address(None, internal=1)
            change_script = next(
                k.script for k in self.keys.values() if self.address_of(k.script) == change_address
            )
            # Change goes last (Core picks a random position; README: known divergences).
            vout.append(CMutableTxOut(change, CScript(change_script)))
        sequence = 0xFFFFFFFD if replaceable else 0xFFFFFFFE
        tx = CMutableTransaction(
            [CMutableTxIn(COutPoint(op[0], op[1]), CScript(), sequence) for op, _ in chosen],
            vout,
            nLockTime=self.chain.height,
            nVersion=2,
        )
        self.sign(tx, [c for _, c in chosen])
        return CTransaction.from_tx(tx)

    def commit(self, tx: CTransaction, comments: dict[str, str] | None = None) -> bytes:
        entry = self.chain.accept_tx(tx)
        wtx = self.txs.get(entry.txid)
        if wtx is not None and comments:
            wtx.comments.update(comments)
        return entry.txid


def sign_inputs(
    tx: CMutableTransaction, coins: list[Coin | None], keys: dict[bytes, tuple[bytes, bytes]]
) -> list[int]:
    """Sign P2WPKH, P2PKH and P2SH-P2WPKH inputs in place; return the indexes not signed."""
    witnesses = [
        CTxInWitness(CScriptWitness(list(tx.wit.vtxinwit[i].scriptWitness.stack)))
        if tx.wit and i < len(tx.wit.vtxinwit)
        else CTxInWitness()
        for i in range(len(tx.vin))
    ]
    unsigned: list[int] = []
    by_hash = {hash160(pub): (secret, pub) for secret, pub in keys.values()}
    by_p2sh = {hash160(p2wpkh_script(pub)): (secret, pub) for secret, pub in keys.values()}
    for i, coin in enumerate(coins):
        if coin is None:
            unsigned.append(i)
            continue
        s = coin.script
        if len(s) == 22 and s[:2] == b"\x00\x14" and s[2:] in by_hash:
            secret, pub = by_hash[s[2:]]
            digest = SignatureHash(
                CScript(p2pkh_script(s[2:])), tx, i, SIGHASH_ALL, coin.value, SIGVERSION_WITNESS_V0
            )
            witnesses[i] = CTxInWitness(
                CScriptWitness([sign_digest(secret, digest) + b"\x01", pub])
            )
        elif len(s) == 23 and s[:2] == b"\xa9\x14" and s[2:22] in by_p2sh:
            secret, pub = by_p2sh[s[2:22]]
            program = hash160(pub)
            digest = SignatureHash(
                CScript(p2pkh_script(program)),
                tx,
                i,
                SIGHASH_ALL,
                coin.value,
                SIGVERSION_WITNESS_V0,
            )
            witnesses[i] = CTxInWitness(
                CScriptWitness([sign_digest(secret, digest) + b"\x01", pub])
            )
            tx.vin[i].scriptSig = CScript([p2wpkh_script(pub)])
        elif len(s) == 25 and s[:3] == b"\x76\xa9\x14" and s[3:23] in by_hash:
            secret, pub = by_hash[s[3:23]]
            digest = SignatureHash(CScript(s), tx, i, SIGHASH_ALL, coin.value, SIGVERSION_BASE)
            tx.vin[i].scriptSig = CScript([sign_digest(secret, digest) + b"\x01", pub])
        else:
            unsigned.append(i)
    if any(not w.is_null() for w in witnesses):
        tx.wit = CTxWitness(witnesses)
    return unsigned


def wallet_scripts_hex(wallet: Wallet) -> list[str]:
    return [hexid(s) for s in wallet.keys]
