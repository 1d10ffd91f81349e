"""The JSON-RPC methods of the stand-in, with Core's argument rules and error codes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from bitcoin.core import CMutableTransaction, CMutableTxIn, CMutableTxOut, COutPoint, CTransaction
from bitcoin.core.script import OPCODE_NAMES, CScript

from simnet.chain import blocks as blk
from simnet.chain.chainstate import BlockEntry, Coin, decode_tx, hexid, unhexid
from simnet.chain.crypto import AddressError, address_script, script_address, wif_decode
from simnet.chain.descriptors import infer_descriptor, parse_descriptor, split_checksum
from simnet.chain.errors import (
    RPC_INVALID_ADDRESS_OR_KEY,
    RPC_INVALID_PARAMETER,
    RPC_MISC_ERROR,
    RPC_TYPE_ERROR,
    RPC_VERIFY_ERROR,
    RPC_WALLET_ALREADY_EXISTS,
    RPC_WALLET_ALREADY_LOADED,
    RPC_WALLET_ERROR,
    RPC_WALLET_INSUFFICIENT_FUNDS,
    RPC_WALLET_NOT_FOUND,
    RPC_WALLET_NOT_SPECIFIED,
    RPCError,
)
from simnet.chain.jsonwire import Amount, amount, json_type_name
from simnet.chain.wallet import Wallet, WalletTx, sign_inputs

if TYPE_CHECKING:
    from simnet.chain.node import Node

MAX_TARGET = 0xFFFF << 208


def product(node: Node) -> str:
    """PACKAGE_NAME of the real daemon played: "Bitcoin Core" or "AZCoin Core"."""
    return "AZCoin Core" if node.params.coin == "azcoin" else "Bitcoin Core"


@dataclass(frozen=True)
class Arg:
    name: str
    type: str  # number | string | bool | object | array | amount | any
    required: bool = False
    doc: str = ""


@dataclass
class Ctx:
    node: Node
    wallet_name: str | None

    def wallet(self) -> Wallet:
        wallets = self.node.wallets
        if self.wallet_name is not None:
            w = wallets.get(self.wallet_name)
            if w is None:
                raise RPCError(
                    RPC_WALLET_NOT_FOUND, "Requested wallet does not exist or is not loaded"
                )
            return w
        if len(wallets) == 1:
            return next(iter(wallets.values()))
        if not wallets:
            raise RPCError(
                RPC_WALLET_NOT_FOUND,
                "No wallet is loaded. Load a wallet using loadwallet or create a new one with "
                "createwallet. (Note: A default wallet is no longer automatically created)",
            )
        if not self.node.params.v30:  # v23's text (seen on the real azcoind 0.2.0)
            raise RPCError(
                RPC_WALLET_NOT_SPECIFIED,
                "Wallet file not specified (must request wallet RPC through /wallet/<filename> "
                "uri-path).",
            )
        raise RPCError(
            RPC_WALLET_NOT_SPECIFIED,
            "Multiple wallets are loaded. Please select which wallet to use by requesting the RPC "
            "through the /wallet/<walletname> URI path.",
        )


@dataclass
class Method:
    name: str
    args: list[Arg]
    fn: Callable[..., Any]
    doc: str
    category: str
    v30_only: bool = False
    aliases: list[str] = field(default_factory=list)

    def help(self, node: Node) -> str:
        cli = "azcoin-cli" if node.params.coin == "azcoin" else "bitcoin-cli"
        lines = [
            " ".join([self.name, *(a.name if a.required else f"( {a.name} )" for a in self.args)]),
            "",
            self.doc,
            "",
        ]
        if self.args:
            lines.append("Arguments:")
            for i, a in enumerate(self.args, 1):
                kind = {"number": "numeric", "bool": "boolean", "amount": "numeric or string"}.get(
                    a.type, a.type
                )
                lines.append(
                    f"{i}. {a.name}    ({kind}, {'required' if a.required else 'optional'}) {a.doc}"
                )
            lines.append("")
        lines += [
            "Examples:",
            f"> {cli} {self.name}",
            "",
            "(simnet SIMULATION: shortened help text)",
        ]
        return "\n".join(lines)


METHODS: dict[str, Method] = {}


def rpc(
    name: str, args: list[Arg], doc: str, category: str = "blockchain", v30_only: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        METHODS[name] = Method(name, args, fn, doc, category, v30_only)
        return fn

    return register


def A(name: str, type_: str, required: bool = False, doc: str = "") -> Arg:  # noqa: N802
    return Arg(name, type_, required, doc)


# --- argument handling -----------------------------------------------------------------------


def bind_params(method: Method, params: Any, node: Node) -> list[Any]:
    if params is None:
        params = []
    if isinstance(params, dict):
        names = [a.name for a in method.args]
        positional: list[Any] = [None] * len(names)
        for key, value in params.items():
            if key not in names:
                raise RPCError(RPC_INVALID_PARAMETER, f"Unknown named parameter {key}")
            positional[names.index(key)] = value
        while positional and positional[-1] is None:
            positional.pop()
        params = positional
    if not isinstance(params, list):
        raise RPCError(-32600, "Params must be an array or object")
    required = sum(1 for a in method.args if a.required)
    if (
        len(params) > len(method.args)
        or len(params) < required
        or any(params[i] is None for i, a in enumerate(method.args[: len(params)]) if a.required)
    ):
        raise RPCError(RPC_MISC_ERROR, method.help(node))
    errors: dict[str, str] = {}
    for i, (arg, value) in enumerate(zip(method.args, params, strict=False), 1):
        if value is None or arg.type in ("any", "amount"):
            continue
        got = json_type_name(value)
        want = {
            "number": "number",
            "string": "string",
            "bool": "bool",
            "object": "object",
            "array": "array",
        }[arg.type]
        if got != want:
            if not node.params.v30:
                raise RPCError(
                    RPC_MISC_ERROR,
                    f"JSON value is not {'an integer' if want == 'number' else 'a ' + want} "
                    "as expected"
                    if want != "object"
                    else "JSON value is not an object as expected",
                )
            errors[f"Position {i} ({arg.name})"] = (
                f"JSON value of type {got} is not of expected type {want}"
            )
    if errors:
        body = ",\n".join(f'    "{k}": "{v}"' for k, v in errors.items())
        raise RPCError(RPC_TYPE_ERROR, "Wrong type passed:\n{\n" + body + "\n}")
    return list(params) + [None] * (len(method.args) - len(params))


# MAX_MONEY (consensus/amount.h): AZCoin's is its supply cap, 7,884,000 AZC (seen on the real
# azcoind 0.2.0: a larger amount is -3 "Amount out of range", not "Insufficient funds")
MAX_MONEY = {"azcoin": 7_884_000 * 100_000_000}


def max_money(node: Node) -> int:
    return MAX_MONEY.get(node.params.coin, 21_000_000 * 100_000_000)


def to_sats(value: Any, limit: int = 21_000_000 * 100_000_000) -> int:
    if isinstance(value, bool) or value is None:
        raise RPCError(RPC_TYPE_ERROR, "Amount is not a number or string")
    try:
        dec = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation as exc:
        raise RPCError(RPC_TYPE_ERROR, "Invalid amount") from exc
    if not dec.is_finite():
        raise RPCError(RPC_TYPE_ERROR, "Invalid amount")
    sats = dec * 100_000_000
    if sats != sats.to_integral_value():
        raise RPCError(RPC_TYPE_ERROR, "Invalid amount")
    if sats < 0 or sats > limit:
        raise RPCError(RPC_TYPE_ERROR, "Amount out of range")
    return int(sats)


def as_int(value: Any, default: int) -> int:
    return default if value is None else int(value)


def as_bool(value: Any, default: bool) -> bool:
    return default if value is None else bool(value)


def parse_hash(value: Any, name: str = "blockhash") -> bytes:
    text = str(value)
    if len(text) != 64:
        raise RPCError(
            RPC_INVALID_PARAMETER, f"{name} must be of length 64 (not {len(text)}, for '{text}')"
        )
    try:
        return unhexid(text)
    except ValueError as exc:
        raise RPCError(
            RPC_INVALID_PARAMETER, f"{name} must be hexadecimal string (not '{text}')"
        ) from exc


def address_to_script(node: Node, address: str) -> bytes:
    p = node.params
    try:
        return address_script(address, p.hrp, p.p2pkh_version, p.p2sh_version)
    except AddressError as exc:
        raise RPCError(
            RPC_INVALID_ADDRESS_OR_KEY, f"Invalid {p.currency_name} address: {address}"
        ) from exc


def find_block(node: Node, blockhash: Any) -> BlockEntry:
    h = parse_hash(blockhash)
    entry = node.chain.index.get(h)
    if entry is None:
        raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found")
    return entry


# --- JSON renderings -------------------------------------------------------------------------


def script_asm(script: bytes) -> str:
    parts: list[str] = []
    try:
        for op in CScript(script):
            if isinstance(op, bytes):
                parts.append(op.hex() if op else "0")
            elif op == 0:
                parts.append("0")
            elif 0x51 <= op <= 0x60:
                parts.append(str(op - 0x50))
            elif op == 0x4F:
                parts.append("-1")
            else:
                parts.append(OPCODE_NAMES.get(op, f"OP_UNKNOWN{int(op)}"))
    except Exception:  # a truncated push: Core prints [error]
        parts.append("[error]")
    return " ".join(parts)


def script_type(script: bytes) -> str:
    if len(script) == 22 and script[:2] == b"\x00\x14":
        return "witness_v0_keyhash"
    if len(script) == 34 and script[:2] == b"\x00\x20":
        return "witness_v0_scripthash"
    if len(script) == 34 and script[:2] == b"\x51\x20":
        return "witness_v1_taproot"
    if len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return "pubkeyhash"
    if len(script) == 23 and script[:2] == b"\xa9\x14" and script[22] == 0x87:
        return "scripthash"
    if script[:1] == b"\x6a":
        return "nulldata"
    if len(script) in (35, 67) and script[-1] == 0xAC:
        return "pubkey"
    return "nonstandard"


def script_pubkey_json(node: Node, script: bytes) -> dict[str, Any]:
    p = node.params
    out: dict[str, Any] = {
        "asm": script_asm(script),
        "desc": infer_descriptor(script, p),
        "hex": script.hex(),
    }
    address = script_address(script, p.hrp, p.p2pkh_version or 0, p.p2sh_version or 5)
    if address:
        out["address"] = address
    out["type"] = script_type(script)
    return out


def tx_json(
    node: Node, tx: CTransaction, include_hex: bool = True, fee: int | None = None
) -> dict[str, Any]:
    vin: list[dict[str, Any]] = []
    for i, txin in enumerate(tx.vin):
        wit = (
            tx.wit.vtxinwit[i].scriptWitness.stack
            if tx.wit.vtxinwit and i < len(tx.wit.vtxinwit)
            else []
        )
        if tx.is_coinbase():
            item: dict[str, Any] = {"coinbase": bytes(txin.scriptSig).hex()}
        else:
            item = {
                "txid": hexid(bytes(txin.prevout.hash)),
                "vout": txin.prevout.n,
                "scriptSig": {
                    "asm": script_asm(bytes(txin.scriptSig)),
                    "hex": bytes(txin.scriptSig).hex(),
                },
            }
        if wit:
            item["txinwitness"] = [bytes(w).hex() for w in wit]
        item["sequence"] = txin.nSequence
        vin.append(item)
    out: dict[str, Any] = {
        "txid": hexid(bytes(tx.GetTxid())),
        "hash": hexid(blk.wtxid(tx)),
        "version": tx.nVersion,
        "size": len(tx.serialize()),
        "vsize": blk.tx_vsize(tx),
        "weight": blk.tx_weight(tx),
        "locktime": tx.nLockTime,
        "vin": vin,
        "vout": [
            {
                "value": amount(o.nValue),
                "n": n,
                "scriptPubKey": script_pubkey_json(node, bytes(o.scriptPubKey)),
            }
            for n, o in enumerate(tx.vout)
        ],
    }
    if fee is not None:
        out["fee"] = amount(fee)
    if include_hex:
        out["hex"] = tx.serialize().hex()
    return out


def difficulty(bits: int) -> float:
    return MAX_TARGET / blk.target_of(bits)


def header_json(node: Node, entry: BlockEntry) -> dict[str, Any]:
    chain = node.chain
    b = entry.block
    out: dict[str, Any] = {
        "hash": entry.hex_hash,
        "confirmations": chain.confirmations(entry),
        "height": entry.height,
        "version": b.nVersion,
        "versionHex": f"{b.nVersion:08x}",
        "merkleroot": hexid(bytes(b.hashMerkleRoot)),
        "time": b.nTime,
        "mediantime": chain.median_time_past(entry),
        "nonce": b.nNonce,
        "bits": f"{b.nBits:08x}",
    }
    if node.params.v30:
        out["target"] = f"{blk.target_of(b.nBits):064x}"
    out["difficulty"] = difficulty(b.nBits)
    out["chainwork"] = f"{entry.chainwork:064x}"
    out["nTx"] = len(b.vtx)
    if entry.height > 0:
        out["previousblockhash"] = hexid(entry.prev)
    if chain.in_active(entry) and entry.height < chain.height:
        out["nextblockhash"] = chain.active[entry.height + 1][::-1].hex()
    return out


# --- blockchain ------------------------------------------------------------------------------


def is_ibd(node: Node) -> bool:
    if node.control.ibd is not None:
        return node.control.ibd
    if not node.left_ibd and node.chain.tip.block.nTime >= time.time() - 24 * 3600:
        node.left_ibd = True
    return not node.left_ibd


def warnings_value(node: Node) -> Any:
    return [] if node.params.v30 else ""


@rpc(
    "getblockchaininfo",
    [],
    "Returns an object containing various state info regarding blockchain processing.",
)
def getblockchaininfo(ctx: Ctx) -> dict[str, Any]:
    node, chain = ctx.node, ctx.node.chain
    tip = chain.tip
    ibd = is_ibd(node)
    out: dict[str, Any] = {
        "chain": node.params.chain_name,
        "blocks": chain.height,
        "headers": chain.height,
        "bestblockhash": tip.hex_hash,
    }
    if node.params.v30:
        out["bits"] = f"{tip.block.nBits:08x}"
        out["target"] = f"{blk.target_of(tip.block.nBits):064x}"
    out.update(
        {
            "difficulty": difficulty(tip.block.nBits),
            "time": tip.block.nTime,
            "mediantime": chain.median_time_past(tip),
            "verificationprogress": 2.0e-06 if ibd and chain.height == 0 else (0.99 if ibd else 1),
            "initialblockdownload": ibd,
            "chainwork": f"{tip.chainwork:064x}",
            "size_on_disk": chain.size_on_disk(),
            "pruned": node.prune_mode > 0,
        }
    )
    if node.prune_mode > 0:
        out["pruneheight"] = chain.prune_height
        out["automatic_pruning"] = node.prune_mode > 1
        if node.prune_mode > 1:
            out["prune_target_size"] = node.prune_mode * 1024 * 1024
    out["warnings"] = warnings_value(node)
    return out


@rpc("getblockcount", [], "Returns the height of the most-work fully-validated chain.")
def getblockcount(ctx: Ctx) -> int:
    return ctx.node.chain.height


@rpc(
    "getbestblockhash",
    [],
    "Returns the hash of the best (tip) block in the most-work fully-validated chain.",
)
def getbestblockhash(ctx: Ctx) -> str:
    return ctx.node.chain.tip.hex_hash


@rpc(
    "getdifficulty",
    [],
    "Returns the proof-of-work difficulty as a multiple of the minimum difficulty.",
)
def getdifficulty(ctx: Ctx) -> float:
    return difficulty(ctx.node.chain.tip.block.nBits)


@rpc(
    "getblockhash",
    [A("height", "number", True, "The height index")],
    "Returns hash of block in best-block-chain at height provided.",
)
def getblockhash(ctx: Ctx, height: Any) -> str:
    chain = ctx.node.chain
    h = int(height)
    if h < 0 or h > chain.height:
        raise RPCError(RPC_INVALID_PARAMETER, "Block height out of range")
    return chain.active[h][::-1].hex()


@rpc(
    "getblock",
    [A("blockhash", "string", True), A("verbosity", "any")],
    "Returns block data for a block hash.",
)
def getblock(ctx: Ctx, blockhash: Any, verbosity: Any) -> Any:
    node = ctx.node
    entry = find_block(node, blockhash)
    level = 1 if verbosity is None else int(verbosity)
    if node.chain.is_pruned(entry):
        raise RPCError(RPC_MISC_ERROR, "Block not available (pruned data)")
    if level == 0:
        return entry.raw.hex()
    out = header_json(node, entry)
    b = entry.block
    stripped = len(b.serialize({"include_witness": False}))
    out["strippedsize"] = stripped
    out["size"] = len(entry.raw)
    out["weight"] = stripped * 3 + len(entry.raw)
    if level == 1:
        out["tx"] = [hexid(bytes(tx.GetTxid())) for tx in b.vtx]
    else:
        txs = []
        for i, tx in enumerate(b.vtx):
            fee = None
            coins = node.chain.prevouts.get(bytes(tx.GetTxid()))
            if i > 0 and coins is not None and len(coins) == len(tx.vin):
                fee = sum(c.value for c in coins) - sum(o.nValue for o in tx.vout)
            txs.append(tx_json(node, tx, fee=fee))
        out["tx"] = txs
    return out


@rpc(
    "getblockheader",
    [A("blockhash", "string", True), A("verbose", "bool")],
    "Returns information about a block header.",
)
def getblockheader(ctx: Ctx, blockhash: Any, verbose: Any) -> Any:
    entry = find_block(ctx.node, blockhash)
    if verbose is False:
        return entry.block.get_header().serialize().hex()
    return header_json(ctx.node, entry)


@rpc("getchaintips", [], "Return information about all known tips in the block tree.")
def getchaintips(ctx: Ctx) -> list[dict[str, Any]]:
    chain = ctx.node.chain
    parents = {e.prev for e in chain.index.values() if e.height > 0}
    tips = [e for e in chain.index.values() if e.hash not in parents]
    out = []
    for e in sorted(tips, key=lambda e: -e.height):
        cur = e
        while not chain.in_active(cur):
            cur = chain.index[cur.prev]
        if chain.in_active(e):
            status = "active"
        elif e.invalid:
            status = "invalid"
        else:
            status = "valid-fork"
        out.append(
            {
                "height": e.height,
                "hash": e.hex_hash,
                "branchlen": e.height - cur.height,
                "status": status,
            }
        )
    out.sort(key=lambda t: (t["status"] != "active", -int(str(t["height"]))))
    return out


@rpc(
    "invalidateblock",
    [A("blockhash", "string", True)],
    "Permanently marks a block as invalid, as if it violated a consensus rule.",
)
def invalidateblock(ctx: Ctx, blockhash: Any) -> None:
    entry = find_block(ctx.node, blockhash)
    ctx.node.chain.invalidate(entry)


@rpc(
    "reconsiderblock",
    [A("blockhash", "string", True)],
    "Removes invalidity status of a block, its ancestors and its descendants.",
)
def reconsiderblock(ctx: Ctx, blockhash: Any) -> None:
    entry = find_block(ctx.node, blockhash)
    ctx.node.chain.reconsider(entry)


@rpc(
    "pruneblockchain",
    [A("height", "number", True)],
    "Attempts to delete block and undo data up to a specified height or timestamp.",
)
def pruneblockchain(ctx: Ctx, height: Any) -> int:
    node, chain = ctx.node, ctx.node.chain
    if node.prune_mode == 0:
        raise RPCError(RPC_MISC_ERROR, "Cannot prune blocks because node is not in prune mode.")
    h = int(height)
    if h < 0:
        raise RPCError(RPC_INVALID_PARAMETER, "Negative block height.")
    if h > 1_000_000_000:
        h = max(
            [
                e.height
                for e in (chain.at_height(i) for i in range(chain.height + 1))
                if e.block.nTime <= h - 7200
            ]
            or [0]
        )
    prune_after = 1000 if node.params.network == "regtest" else 100_000
    if chain.height < prune_after:
        raise RPCError(RPC_MISC_ERROR, "Blockchain is too short for pruning.")
    if h > chain.height:
        raise RPCError(
            RPC_INVALID_PARAMETER, "Blockchain is shorter than the attempted prune height."
        )
    h = min(h, chain.height - 288)
    chain.prune_height = max(chain.prune_height, h + 1)
    node.log(f"Prune: pruned blocks up to height {h} (simulated)")
    return chain.prune_height - 1


# --- mempool / transactions ------------------------------------------------------------------


def mempool_entry_json(node: Node, txid: bytes) -> dict[str, Any]:
    chain = node.chain
    m = chain.mempool[txid]
    depends = [
        hexid(bytes(i.prevout.hash)) for i in m.tx.vin if bytes(i.prevout.hash) in chain.mempool
    ]
    spentby = [
        hexid(chain.mempool_spends[(txid, n)])
        for n in range(len(m.tx.vout))
        if (txid, n) in chain.mempool_spends
    ]
    out: dict[str, Any] = {
        "vsize": m.vsize,
        "weight": m.weight,
        "time": m.time,
        "height": m.height,
        "descendantcount": 1 + len(spentby),
        "descendantsize": m.vsize,
        "ancestorcount": 1 + len(depends),
        "ancestorsize": m.vsize,
        "wtxid": hexid(blk.wtxid(m.tx)),
        "fees": {
            "base": amount(m.fee),
            "modified": amount(chain.modified_fee(txid)),
            "ancestor": amount(m.fee),
            "descendant": amount(m.fee),
        },
        "depends": depends,
        "spentby": spentby,
        "bip125-replaceable": m.replaceable,
        "unbroadcast": m.unbroadcast,
    }
    return out


@rpc(
    "getrawmempool",
    [A("verbose", "bool"), A("mempool_sequence", "bool")],
    "Returns all transaction ids in memory pool.",
)
def getrawmempool(ctx: Ctx, verbose: Any, mempool_sequence: Any) -> Any:
    chain = ctx.node.chain
    if verbose:
        if mempool_sequence:
            raise RPCError(
                RPC_INVALID_PARAMETER, "Verbose results cannot contain mempool sequence values."
            )
        return {hexid(t): mempool_entry_json(ctx.node, t) for t in chain.mempool}
    ids = [hexid(t) for t in chain.mempool]
    if mempool_sequence:
        return {"txids": ids, "mempool_sequence": chain.mempool_seq}
    return ids


@rpc("getmempoolentry", [A("txid", "string", True)], "Returns mempool data for given transaction.")
def getmempoolentry(ctx: Ctx, txid: Any) -> dict[str, Any]:
    h = parse_hash(txid, "txid")
    if h not in ctx.node.chain.mempool:
        raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "Transaction not in mempool")
    return mempool_entry_json(ctx.node, h)


@rpc(
    "prioritisetransaction",
    [A("txid", "string", True), A("dummy", "number"), A("fee_delta", "number", True)],
    "Accepts the transaction into mined blocks at a higher (or lower) priority.",
    "mining",
)
def prioritisetransaction(ctx: Ctx, txid: Any, dummy: Any, fee_delta: Any) -> bool:
    if dummy is not None and int(dummy) != 0:
        raise RPCError(
            RPC_INVALID_PARAMETER,
            "Priority is no longer supported, dummy argument to prioritisetransaction must be 0.",
        )
    key = parse_hash(txid, "txid")
    chain = ctx.node.chain
    chain.fee_deltas[key] = chain.fee_deltas.get(key, 0) + int(fee_delta)
    if chain.fee_deltas[key] == 0:
        del chain.fee_deltas[key]
    return True


@rpc("getmempoolinfo", [], "Returns details on the active state of the TX memory pool.")
def getmempoolinfo(ctx: Ctx) -> dict[str, Any]:
    node, chain = ctx.node, ctx.node.chain
    size = sum(m.vsize for m in chain.mempool.values())
    out: dict[str, Any] = {
        "loaded": True,
        "size": len(chain.mempool),
        "bytes": size,
        "usage": 1200 * len(chain.mempool),
        "total_fee": amount(sum(m.fee for m in chain.mempool.values())),
        "maxmempool": node.max_mempool_mb * 1_000_000,
        "mempoolminfee": amount(100),
        "minrelaytxfee": amount(100),
        "unbroadcastcount": sum(1 for m in chain.mempool.values() if m.unbroadcast),
    }
    if node.params.v30:  # v23 (the real azcoind 0.2.0) has neither field
        out["incrementalrelayfee"] = amount(100)
        out["fullrbf"] = True
        out["permitbaremultisig"] = True
        out["maxdatacarriersize"] = 100000
    return out


@rpc(
    "getrawtransaction",
    [A("txid", "string", True), A("verbose", "any"), A("blockhash", "string")],
    "Return the raw transaction data.",
)
def getrawtransaction(ctx: Ctx, txid: Any, verbose: Any, blockhash: Any) -> Any:
    node, chain = ctx.node, ctx.node.chain
    h = parse_hash(txid, "parameter 1")
    tx: CTransaction | None = None
    entry: BlockEntry | None = None
    if blockhash is not None:
        entry = find_block(node, blockhash)
        tx = next((t for t in entry.block.vtx if bytes(t.GetTxid()) == h), None)
        if tx is None:
            raise RPCError(
                RPC_INVALID_ADDRESS_OR_KEY,
                "No such transaction found in the provided block. Use gettransaction for "
                "wallet transactions.",
            )
    elif h in chain.mempool:
        tx = chain.mempool[h].tx
    elif h in chain.tx_block and node.txindex:
        entry = chain.index[chain.tx_block[h][0]]
        tx = entry.block.vtx[chain.tx_block[h][1]]
    if tx is None:
        msg = (
            "No such mempool or blockchain transaction. Use gettransaction for wallet transactions."
            if node.txindex
            else (
                "No such mempool transaction. Use -txindex or provide a block hash to enable "
                "blockchain transaction queries. Use gettransaction for wallet transactions."
            )
        )
        raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, msg)
    level = 0 if verbose in (None, False, 0) else 1
    if level == 0:
        return tx.serialize().hex()
    out = tx_json(node, tx)
    if entry is not None:
        out["blockhash"] = entry.hex_hash
        out["confirmations"] = max(chain.confirmations(entry), 0)
        out["time"] = entry.block.nTime
        out["blocktime"] = entry.block.nTime
        if blockhash is not None:
            out = {"in_active_chain": chain.in_active(entry), **out}
    return out


@rpc(
    "decoderawtransaction",
    [A("hexstring", "string", True), A("iswitness", "bool")],
    "Return a JSON object representing the serialized, hex-encoded transaction.",
)
def decoderawtransaction(ctx: Ctx, hexstring: Any, iswitness: Any) -> dict[str, Any]:
    return tx_json(ctx.node, decode_tx(str(hexstring)), include_hex=False)


@rpc("decodescript", [A("hexstring", "string", True)], "Decode a hex-encoded script.")
def decodescript(ctx: Ctx, hexstring: Any) -> dict[str, Any]:
    script = bytes.fromhex(str(hexstring))
    out = script_pubkey_json(ctx.node, script)
    return {
        "asm": out["asm"],
        "desc": out["desc"],
        "type": out["type"],
        **({"address": out["address"]} if "address" in out else {}),
    }


@rpc(
    "createrawtransaction",
    [
        A("inputs", "array", True),
        A("outputs", "any", True),
        A("locktime", "number"),
        A("replaceable", "bool"),
    ],
    "Create a transaction spending the given inputs and creating new outputs.",
)
def createrawtransaction(
    ctx: Ctx, inputs: Any, outputs: Any, locktime: Any, replaceable: Any
) -> str:
    return str(build_raw(ctx.node, inputs, outputs, locktime, replaceable).serialize().hex())


def parse_outputs(node: Node, outputs: Any) -> list[tuple[bytes, int]]:
    items: list[tuple[str, Any]] = []
    if isinstance(outputs, dict):
        items = list(outputs.items())
    elif isinstance(outputs, list):
        for o in outputs:
            if not isinstance(o, dict):
                raise RPCError(
                    RPC_INVALID_PARAMETER,
                    "Invalid parameter, key-value pair not an object as expected",
                )
            items.extend(o.items())
    else:
        raise RPCError(RPC_TYPE_ERROR, "Expected type array or object")
    out: list[tuple[bytes, int]] = []
    seen: set[str] = set()
    for key, value in items:
        if key == "data":
            data = bytes.fromhex(str(value))
            out.append((bytes([0x6A, len(data)]) + data, 0))
            continue
        if key in seen:
            raise RPCError(RPC_INVALID_PARAMETER, f"Invalid parameter, duplicated address: {key}")
        seen.add(key)
        out.append((address_to_script(node, key), to_sats(value, max_money(node))))
    return out


def build_raw(
    node: Node, inputs: Any, outputs: Any, locktime: Any, replaceable: Any
) -> CTransaction:
    rbf = as_bool(replaceable, node.params.v30)
    vin = []
    for item in inputs:
        if not isinstance(item, dict) or "txid" not in item or "vout" not in item:
            raise RPCError(RPC_INVALID_PARAMETER, "Invalid parameter, missing vout key")
        seq = item.get("sequence")
        if seq is None:
            seq = 0xFFFFFFFD if rbf else (0xFFFFFFFE if locktime else 0xFFFFFFFF)
            if node.params.v30 and replaceable is None:
                seq = 0xFFFFFFFD
        vin.append(
            CMutableTxIn(
                COutPoint(parse_hash(item["txid"], "txid"), int(item["vout"])), CScript(), int(seq)
            )
        )
    vout = [CMutableTxOut(v, CScript(s)) for s, v in parse_outputs(node, outputs)]
    return CTransaction.from_tx(
        CMutableTransaction(vin, vout, nLockTime=as_int(locktime, 0), nVersion=2)
    )


def _prev_coins(node: Node, tx: CTransaction, prevtxs: Any) -> list[Coin | None]:
    given: dict[tuple[bytes, int], Coin] = {}
    for p in prevtxs or []:
        given[(unhexid(p["txid"]), int(p["vout"]))] = Coin(
            to_sats(p.get("amount", 0), max_money(node)), bytes.fromhex(p["scriptPubKey"]), 0, False
        )
    out: list[Coin | None] = []
    for txin in tx.vin:
        op = (bytes(txin.prevout.hash), txin.prevout.n)
        out.append(given.get(op) or node.chain.coin_view(op))
    return out


def _check_script_prevouts(prevtxs: Any) -> None:
    """Core's ParsePrevouts with private keys given: a P2SH or P2WSH prevout must come with its
    redeemScript or witnessScript (-8), and a P2SH redeemScript must hash to the script."""
    from simnet.chain.crypto import hash160

    for p in prevtxs or []:
        spk = bytes.fromhex(str(p.get("scriptPubKey", "")))
        p2sh = len(spk) == 23 and spk[:2] == b"\xa9\x14" and spk[-1] == 0x87
        p2wsh = len(spk) == 34 and spk[:2] == b"\x00\x20"
        if not (p2sh or p2wsh):
            continue
        redeem, witness = p.get("redeemScript"), p.get("witnessScript")
        if redeem is None and witness is None:
            raise RPCError(RPC_INVALID_PARAMETER, "Missing redeemScript/witnessScript")
        if p2sh and redeem is not None and hash160(bytes.fromhex(str(redeem))) != spk[2:22]:
            raise RPCError(RPC_INVALID_PARAMETER, "redeemScript does not match scriptPubKey")


def _sign_result(
    tx: CMutableTransaction, coins: list[Coin | None], unsigned: list[int]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "hex": CTransaction.from_tx(tx).serialize().hex(),
        "complete": not unsigned,
    }
    if unsigned:
        out["errors"] = [
            {
                "txid": hexid(bytes(tx.vin[i].prevout.hash)),
                "vout": tx.vin[i].prevout.n,
                "witness": [],
                "scriptSig": "",
                "sequence": tx.vin[i].nSequence,
                "error": "Input not found or already spent"
                if coins[i] is None
                else "Unable to sign input, invalid stack size (possibly missing key)",
            }
            for i in unsigned
        ]
    return out


@rpc(
    "signrawtransactionwithkey",
    [
        A("hexstring", "string", True),
        A("privkeys", "array", True),
        A("prevtxs", "array"),
        A("sighashtype", "string"),
    ],
    "Sign inputs for raw transaction (serialized, hex-encoded).",
)
def signrawtransactionwithkey(
    ctx: Ctx, hexstring: Any, privkeys: Any, prevtxs: Any, sighashtype: Any
) -> dict[str, Any]:
    tx = CMutableTransaction.from_tx(decode_tx(str(hexstring)))
    keys: dict[bytes, tuple[bytes, bytes]] = {}
    from simnet.chain.crypto import pubkey_of

    for wif in privkeys:
        try:
            secret, _ = wif_decode(str(wif))
        except ValueError as exc:
            raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "Invalid private key") from exc
        pub = pubkey_of(secret)
        keys[pub] = (secret, pub)
    _check_script_prevouts(prevtxs)
    coins = _prev_coins(ctx.node, CTransaction.from_tx(tx), prevtxs)
    unsigned = sign_inputs(tx, coins, keys)
    return _sign_result(tx, coins, unsigned)


@rpc(
    "signrawtransactionwithwallet",
    [A("hexstring", "string", True), A("prevtxs", "array"), A("sighashtype", "string")],
    "Sign inputs for raw transaction with the wallet's keys.",
    "wallet",
)
def signrawtransactionwithwallet(
    ctx: Ctx, hexstring: Any, prevtxs: Any, sighashtype: Any
) -> dict[str, Any]:
    wallet = ctx.wallet()
    tx = CMutableTransaction.from_tx(decode_tx(str(hexstring)))
    coins = _prev_coins(ctx.node, CTransaction.from_tx(tx), prevtxs)
    unsigned = wallet.sign(tx, coins)
    return _sign_result(tx, coins, unsigned)


@rpc(
    "sendrawtransaction",
    [A("hexstring", "string", True), A("maxfeerate", "amount"), A("maxburnamount", "amount")],
    "Submit a raw transaction (serialized, hex-encoded) to local node and network.",
)
def sendrawtransaction(ctx: Ctx, hexstring: Any, maxfeerate: Any, maxburnamount: Any) -> str:
    tx = decode_tx(str(hexstring))
    check_max_fee(ctx.node, tx, maxfeerate)
    entry = ctx.node.chain.accept_tx(tx)
    ctx.node.relay_tx(tx)
    return hexid(entry.txid)


def check_max_fee(node: Node, tx: CTransaction, maxfeerate: Any) -> None:
    limit = to_sats(maxfeerate) if maxfeerate is not None else 10_000_000  # 0.10 BTC/kvB
    if limit == 0:
        return
    try:
        entry = node.chain.check_tx(tx)
    except RPCError:
        return
    if entry.fee * 1000 > limit * entry.vsize:
        raise RPCError(
            RPC_VERIFY_ERROR,  # Core: TransactionError::MAX_FEE_EXCEEDED
            "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)",
        )


@rpc(
    "testmempoolaccept",
    [A("rawtxs", "array", True), A("maxfeerate", "amount")],
    "Returns result of mempool acceptance tests indicating if raw transaction(s) would be "
    "accepted by mempool.",
)
def testmempoolaccept(ctx: Ctx, rawtxs: Any, maxfeerate: Any) -> list[dict[str, Any]]:
    out = []
    for raw in rawtxs:
        tx = decode_tx(str(raw))
        item: dict[str, Any] = {"txid": hexid(bytes(tx.GetTxid())), "wtxid": hexid(blk.wtxid(tx))}
        try:
            if bytes(tx.GetTxid()) in ctx.node.chain.mempool:
                raise RPCError(-26, "txn-already-in-mempool")
            entry = ctx.node.chain.check_tx(tx)
            item["allowed"] = True
            item["vsize"] = entry.vsize
            item["fees"] = {"base": amount(entry.fee)}
            if ctx.node.params.v30:
                item["fees"]["effective-feerate"] = amount(entry.fee * 1000 // entry.vsize)
                item["fees"]["effective-includes"] = [item["wtxid"]]
        except RPCError as err:
            item["allowed"] = False
            item["reject-reason"] = "missing-inputs" if err.code == -25 else err.message
        out.append(item)
    return out


@rpc(
    "gettxout",
    [A("txid", "string", True), A("n", "number", True), A("include_mempool", "bool")],
    "Returns details about an unspent transaction output.",
)
def gettxout(ctx: Ctx, txid: Any, n: Any, include_mempool: Any) -> Any:
    chain = ctx.node.chain
    op = (parse_hash(txid, "txid"), int(n))
    coin = chain.coin_view(op) if as_bool(include_mempool, True) else chain.utxo.get(op)
    if coin is None or (as_bool(include_mempool, True) and op in chain.mempool_spends):
        return None
    return {
        "bestblock": chain.tip.hex_hash,
        "confirmations": 0 if coin.height < 0 else chain.height - coin.height + 1,
        "value": amount(coin.value),
        "scriptPubKey": script_pubkey_json(ctx.node, coin.script),
        "coinbase": coin.coinbase,
    }


@rpc(
    "estimatesmartfee",
    [A("conf_target", "number", True), A("estimate_mode", "string")],
    "Estimates the approximate fee per kilobyte needed for a transaction to begin "
    "confirmation within conf_target blocks.",
)
def estimatesmartfee(ctx: Ctx, conf_target: Any, estimate_mode: Any) -> dict[str, Any]:
    rate = ctx.node.control.fee_estimate
    if estimate_mode is not None and str(estimate_mode).lower() not in (
        "unset",
        "economical",
        "conservative",
    ):
        raise RPCError(
            RPC_INVALID_PARAMETER,
            'Invalid estimate_mode parameter, must be one of: "unset", "economical", '
            '"conservative"',
        )
    if rate is None:
        return {"errors": ["Insufficient data or no feerate found"], "blocks": 0}
    return {"feerate": amount(rate * 1000), "blocks": max(2, int(conf_target))}


@rpc(
    "scantxoutset",
    [A("action", "string", True), A("scanobjects", "array")],
    "Scans the unspent transaction output set for entries that match certain output descriptors.",
)
def scantxoutset(ctx: Ctx, action: Any, scanobjects: Any) -> Any:
    node, chain = ctx.node, ctx.node.chain
    if action in ("status", "abort"):
        return None if action == "status" else False
    if action != "start":
        raise RPCError(RPC_INVALID_PARAMETER, "Invalid action '" + str(action) + "'")
    if scanobjects is None:
        raise RPCError(RPC_MISC_ERROR, "scanobjects argument is required for the start action")
    targets: dict[bytes, str] = {}
    for obj in scanobjects:
        text = obj["desc"] if isinstance(obj, dict) else str(obj)
        rng = obj.get("range", 1000) if isinstance(obj, dict) else 1000
        desc = parse_descriptor(text, node.params)
        lo, hi = (0, rng) if isinstance(rng, int) else (int(rng[0]), int(rng[1]))
        for i in range(lo, (hi + 1) if desc.ranged else lo + 1):
            for ds in desc.expand(i, node.params):
                targets.setdefault(ds.script, ds.desc)
    unspents = []
    total = 0
    for script, desc_text in targets.items():
        for op in sorted(chain.by_script.get(script, ())):
            coin = chain.utxo[op]
            item: dict[str, Any] = {
                "txid": hexid(op[0]),
                "vout": op[1],
                "scriptPubKey": script.hex(),
                "desc": desc_text,
                "amount": amount(coin.value),
            }
            if node.params.v30:
                item["coinbase"] = coin.coinbase
            item["height"] = coin.height
            if node.params.v30:
                item["blockhash"] = chain.active[coin.height][::-1].hex()
                item["confirmations"] = chain.height - coin.height + 1
            unspents.append(item)
            total += coin.value
    return {
        "success": True,
        "txouts": len(chain.utxo),
        "height": chain.height,
        "bestblock": chain.tip.hex_hash,
        "unspents": unspents,
        "total_amount": amount(total),
    }


@rpc("getdescriptorinfo", [A("descriptor", "string", True)], "Analyses a descriptor.")
def getdescriptorinfo(ctx: Ctx, descriptor: Any) -> dict[str, Any]:
    from simnet.chain.crypto import descriptor_checksum, with_checksum

    text = str(descriptor)
    desc = parse_descriptor(text, ctx.node.params)
    body = split_checksum(text, False)
    return {
        "descriptor": with_checksum(desc.public_text(ctx.node.params)),
        "checksum": descriptor_checksum(body),
        "isrange": desc.ranged,
        "issolvable": desc.kind not in ("addr", "raw"),
        "hasprivatekeys": desc.has_private,
    }


@rpc(
    "deriveaddresses",
    [A("descriptor", "string", True), A("range", "any")],
    "Derives one or more addresses corresponding to an output descriptor.",
)
def deriveaddresses(ctx: Ctx, descriptor: Any, range_: Any) -> list[str]:
    p = ctx.node.params
    desc = parse_descriptor(str(descriptor), p, require_checksum=True)
    lo, hi = (
        (0, 0)
        if range_ is None
        else (
            (0, int(range_)) if not isinstance(range_, list) else (int(range_[0]), int(range_[1]))
        )
    )
    out = []
    for i in range(lo, hi + 1):
        for ds in desc.expand(i, p):
            a = script_address(ds.script, p.hrp, p.p2pkh_version or 0, p.p2sh_version or 5)
            if a:
                out.append(a)
    return out


@rpc(
    "validateaddress",
    [A("address", "string", True)],
    "Return information about the given bitcoin address.",
)
def validateaddress(ctx: Ctx, address: Any) -> dict[str, Any]:
    try:
        script = address_to_script(ctx.node, str(address))
    except RPCError:
        return {"isvalid": False, "error_locations": [], "error": "Invalid address"}
    return {
        "isvalid": True,
        "address": str(address),
        "scriptPubKey": script.hex(),
        "isscript": script_type(script) in ("scripthash", "witness_v0_scripthash"),
        "iswitness": script[0] in (0, *range(0x51, 0x61))
        and script_type(script).startswith("witness"),
    }


# --- mining ----------------------------------------------------------------------------------


@rpc(
    "generatetoaddress",
    [A("nblocks", "number", True), A("address", "string", True), A("maxtries", "number")],
    "Mine to a specified address and return the block hashes.",
    "mining",
)
def generatetoaddress(ctx: Ctx, nblocks: Any, address: Any, maxtries: Any) -> list[str]:
    p = ctx.node.params
    try:
        script = address_script(str(address), p.hrp, p.p2pkh_version, p.p2sh_version)
    except AddressError as exc:
        raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "Error: Invalid address") from exc
    return [ctx.node.mine_block(script).hex_hash for _ in range(int(nblocks))]


@rpc(
    "generatetodescriptor",
    [A("num_blocks", "number", True), A("descriptor", "string", True), A("maxtries", "number")],
    "Mine to a specified descriptor and return the block hashes.",
    "mining",
)
def generatetodescriptor(ctx: Ctx, num_blocks: Any, descriptor: Any, maxtries: Any) -> list[str]:
    node = ctx.node
    desc = parse_descriptor(str(descriptor), node.params)
    scripts = desc.expand(0, node.params)
    if len(scripts) != 1 or (desc.key is not None and desc.key.ranged):
        raise RPCError(
            RPC_INVALID_ADDRESS_OR_KEY,
            "Ranged descriptor not accepted. Maybe pass through deriveaddresses first?",
        )
    return [node.mine_block(scripts[0].script).hex_hash for _ in range(int(num_blocks))]


@rpc(
    "generateblock",
    [A("output", "string", True), A("transactions", "array", True), A("submit", "bool")],
    "Mine a set of ordered transactions to a specified address or descriptor and return the "
    "block hash.",
    "mining",
)
def generateblock(ctx: Ctx, output: Any, transactions: Any, submit: Any) -> dict[str, Any]:
    node = ctx.node
    try:
        script = address_to_script(node, str(output))
    except RPCError:
        descs = parse_descriptor(str(output), node.params).expand(0, node.params)
        script = descs[0].script
    txs = []
    for item in transactions:
        text = str(item)
        if len(text) == 64 and unhexid(text) in node.chain.mempool:
            txs.append(node.chain.mempool[unhexid(text)].tx)
        else:
            txs.append(decode_tx(text))
    entry = node.mine_block(script, txs)
    return {"hash": entry.hex_hash}


@rpc("getmininginfo", [], "Returns a json object containing mining-related information.", "mining")
def getmininginfo(ctx: Ctx) -> dict[str, Any]:
    chain = ctx.node.chain
    return {
        "blocks": chain.height,
        "difficulty": difficulty(chain.tip.block.nBits),
        "networkhashps": 0,
        "pooledtx": len(chain.mempool),
        "chain": ctx.node.params.chain_name,
        "warnings": warnings_value(ctx.node),
    }


# --- network / control -----------------------------------------------------------------------


@rpc(
    "getnetworkinfo",
    [],
    "Returns an object containing various state info regarding P2P networking.",
    "network",
)
def getnetworkinfo(ctx: Ctx) -> dict[str, Any]:
    node = ctx.node
    v30 = node.params.v30
    nets = [
        {
            "name": n,
            "limited": n not in ("ipv4", "ipv6"),
            "reachable": n in ("ipv4", "ipv6"),
            "proxy": "",
            "proxy_randomize_credentials": False,
        }
        for n in ("ipv4", "ipv6", "onion", "i2p", "cjdns")
    ]
    peers = node.peer_count()
    return {
        "version": node.version_number,
        "subversion": node.subversion,
        "protocolversion": 70016,
        "localservices": "0000000000000c09" if v30 else "0000000000000409",
        "localservicesnames": [
            "NETWORK",
            "WITNESS",
            "NETWORK_LIMITED",
            *(["P2P_V2"] if v30 else []),
        ],
        "localrelay": True,
        "timeoffset": 0,
        "networkactive": True,
        "connections": peers,
        "connections_in": 0,
        "connections_out": peers,
        "networks": nets,
        "relayfee": amount(100),
        "incrementalfee": amount(100),
        "localaddresses": [],
        "warnings": warnings_value(node),
    }


@rpc("getconnectioncount", [], "Returns the number of connections to other nodes.", "network")
def getconnectioncount(ctx: Ctx) -> int:
    return ctx.node.peer_count()


@rpc("getpeerinfo", [], "Returns data about each connected network peer.", "network")
def getpeerinfo(ctx: Ctx) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "addr": addr,
            "network": "ipv4",
            "inbound": False,
            "subver": "/Satoshi:simnet/",
            "synced_blocks": ctx.node.chain.height,
        }
        for i, addr in enumerate(ctx.node.peer_addresses())
    ]


@rpc("getzmqnotifications", [], "Returns information about the active ZeroMQ notifications.", "zmq")
def getzmqnotifications(ctx: Ctx) -> list[dict[str, Any]]:
    return [{"type": f"pub{t}", "address": a, "hwm": h} for t, a, h in ctx.node.zmq_endpoints]


@rpc("getrpcinfo", [], "Returns details of the RPC server.", "control")
def getrpcinfo(ctx: Ctx) -> dict[str, Any]:
    now = time.monotonic()
    return {
        "active_commands": [
            {"method": method, "duration": int((now - started) * 1_000_000)}
            for method, started in ctx.node.active_rpc.values()
        ],
        "logpath": str(ctx.node.netdir / "debug.log"),
    }


@rpc("uptime", [], "Returns the total uptime of the server.", "control")
def uptime(ctx: Ctx) -> int:
    return int(time.time() - ctx.node.started)


@rpc(
    "getindexinfo",
    [A("index_name", "string")],
    "Returns the status of one or all available indices currently running in the node.",
    "util",
)
def getindexinfo(ctx: Ctx, index_name: Any) -> dict[str, Any]:
    out = (
        {"txindex": {"synced": True, "best_block_height": ctx.node.chain.height}}
        if ctx.node.txindex
        else {}
    )
    return {k: v for k, v in out.items() if index_name in (None, k)}


@rpc("stop", [A("wait", "number")], "Request a graceful shutdown of the server.", "control")
def stop(ctx: Ctx, wait: Any) -> str:
    ctx.node.request_stop()
    return f"{product(ctx.node)} stopping"


@rpc(
    "help",
    [A("command", "string")],
    "List all commands, or get help for a specified command.",
    "control",
)
def help_(ctx: Ctx, command: Any) -> str:
    if command:
        m = METHODS.get(str(command))
        if m is None:
            return f"help: unknown command: {command}"
        return m.help(ctx.node)
    lines: list[str] = []
    for cat in sorted({m.category for m in METHODS.values()}):
        lines.append(f"== {cat.capitalize()} ==")
        lines.extend(
            " ".join([m.name, *(a.name if a.required else f"( {a.name} )" for a in m.args)])
            for m in sorted(METHODS.values(), key=lambda m: m.name)
            if m.category == cat
        )
        lines.append("")
    return "\n".join(lines).rstrip("\n")


# --- wallets ---------------------------------------------------------------------------------


def last_processed(ctx: Ctx) -> dict[str, Any]:
    tip = ctx.node.chain.tip
    return {"hash": tip.hex_hash, "height": tip.height}


@rpc(
    "createwallet",
    [
        A("wallet_name", "string", True),
        A("disable_private_keys", "bool"),
        A("blank", "bool"),
        A("passphrase", "string"),
        A("avoid_reuse", "bool"),
        A("descriptors", "bool"),
        A("load_on_startup", "bool"),
        A("external_signer", "bool"),
    ],
    "Creates and loads a new wallet.",
    "wallet",
)
def createwallet(
    ctx: Ctx,
    wallet_name: Any,
    disable_private_keys: Any,
    blank: Any,
    passphrase: Any,
    avoid_reuse: Any,
    descriptors: Any,
    load_on_startup: Any,
    external_signer: Any,
) -> dict[str, Any]:
    node = ctx.node
    name = str(wallet_name)
    if descriptors is False:
        raise RPCError(
            RPC_WALLET_ERROR,
            'descriptors argument must be set to "true"; it is no longer possible to create a '
            "legacy wallet.",
        )
    path = node.wallet_path(name)
    if (path / "wallet.dat").exists() or name in node.wallets:
        raise RPCError(
            RPC_WALLET_ERROR,
            f"Wallet file verification failed. Failed to create database path '{path}'. "
            "Database already exists.",
        )
    wallet = Wallet.create(
        name,
        path,
        node.chain,
        blank=as_bool(blank, False),
        disable_private_keys=as_bool(disable_private_keys, False),
    )
    node.attach_wallet(wallet)
    out: dict[str, Any] = {"name": name}
    if not node.params.v30:
        out["warning"] = ""
    return out


@rpc(
    "loadwallet",
    [A("filename", "string", True), A("load_on_startup", "bool")],
    "Loads a wallet from a wallet file or directory.",
    "wallet",
)
def loadwallet(ctx: Ctx, filename: Any, load_on_startup: Any) -> dict[str, Any]:
    node = ctx.node
    name = str(filename)
    if name in node.wallets:
        if not node.params.v30:
            # v23 has no "already loaded" check: the second open fails on the SQLite lock
            raise RPCError(
                RPC_WALLET_ERROR,
                "Wallet file verification failed. SQLiteDatabase: Unable to obtain an exclusive "
                f"lock on the database, is it being used by another instance of {product(node)}?"
                "\n",
            )
        raise RPCError(RPC_WALLET_ALREADY_LOADED, f'Wallet "{name}" is already loaded.')
    path = node.wallet_path(name)
    if not (path / "wallet.dat").exists():
        raise RPCError(
            RPC_WALLET_NOT_FOUND,
            f"Wallet file verification failed. Failed to load database path '{path}'. Path "
            "does not exist.",
        )
    node.attach_wallet(Wallet.load(name, path, node.chain))
    out: dict[str, Any] = {"name": name}
    if not node.params.v30:
        out["warning"] = ""
    return out


@rpc(
    "unloadwallet",
    [A("wallet_name", "string"), A("load_on_startup", "bool")],
    "Unloads the wallet referenced by the request endpoint or the wallet_name argument.",
    "wallet",
)
def unloadwallet(ctx: Ctx, wallet_name: Any, load_on_startup: Any) -> dict[str, Any]:
    node = ctx.node
    if wallet_name is not None and ctx.wallet_name is not None and wallet_name != ctx.wallet_name:
        raise RPCError(
            RPC_INVALID_PARAMETER,
            "RPC endpoint wallet and wallet_name parameter specify different wallets",
        )
    name = str(wallet_name) if wallet_name is not None else ctx.wallet().name
    if name not in node.wallets:
        raise RPCError(RPC_WALLET_NOT_FOUND, "Requested wallet does not exist or is not loaded")
    node.detach_wallet(name)
    return {} if node.params.v30 else {"warning": ""}


@rpc("listwallets", [], "Returns a list of currently loaded wallets.", "wallet")
def listwallets(ctx: Ctx) -> list[str]:
    return list(ctx.node.wallets)


@rpc("listwalletdir", [], "Returns a list of wallets in the wallet directory.", "wallet")
def listwalletdir(ctx: Ctx) -> dict[str, Any]:
    root = ctx.node.walletdir
    names = sorted(p.parent.name for p in root.glob("*/wallet.dat")) if root.exists() else []
    return {
        "wallets": [
            {"name": n, "warnings": []} if ctx.node.params.v30 else {"name": n} for n in names
        ]
    }


@rpc("getwalletinfo", [], "Returns an object containing various wallet state info.", "wallet")
def getwalletinfo(ctx: Ctx) -> dict[str, Any]:
    w = ctx.wallet()
    v30 = ctx.node.params.v30
    out: dict[str, Any] = {"walletname": w.name, "walletversion": 169900, "format": "sqlite"}
    if not v30:
        bal = w.balances()
        out["balance"] = amount(bal["trusted"])
        out["unconfirmed_balance"] = amount(bal["untrusted_pending"])
        out["immature_balance"] = amount(bal["immature"])
    out.update(
        {
            "txcount": len(w.txs),
            "keypoolsize": 4000 if w.seed else 0,
            "keypoolsize_hd_internal": 4000 if w.seed else 0,
            "paytxfee": amount(0),
            "private_keys_enabled": w.private_keys_enabled,
            "avoid_reuse": False,
            "scanning": False,
            "descriptors": True,
            "external_signer": False,
        }
    )
    if v30:
        out["blank"] = w.blank
        out["birthtime"] = w.birthtime
        out["flags"] = (["last_hardened_xpub_cached"] if w.seed else []) + ["descriptor_wallet"]
        out["lastprocessedblock"] = last_processed(ctx)
    return out


@rpc(
    "getnewaddress",
    [A("label", "string"), A("address_type", "string")],
    "Returns a new address for receiving payments.",
    "wallet",
)
def getnewaddress(ctx: Ctx, label: Any, address_type: Any) -> str:
    w = ctx.wallet()
    if address_type is not None and address_type not in (
        "bech32",
        "legacy",
        "p2sh-segwit",
        "bech32m",
    ):
        raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, f"Unknown address type '{address_type}'")
    if address_type not in (None, "bech32"):
        raise RPCError(
            RPC_WALLET_ERROR,
            f"Error: No {address_type} addresses available (simnet SIMULATION: bech32 only)",
        )
    if label == "*":
        raise RPCError(-11, "Invalid label name")
    addr = w.new_address("" if label is None else str(label))
    ctx.node.mark_dirty()
    return addr


@rpc(
    "getrawchangeaddress",
    [A("address_type", "string")],
    "Returns a new address, for receiving change.",
    "wallet",
)
def getrawchangeaddress(ctx: Ctx, address_type: Any) -> str:
    w = ctx.wallet()
    return w.new_address(None, internal=1)


@rpc(
    "getaddressinfo",
    [A("address", "string", True)],
    "Return information about the given address.",
    "wallet",
)
def getaddressinfo(ctx: Ctx, address: Any) -> dict[str, Any]:
    w = ctx.wallet()
    node = ctx.node
    p = node.params
    try:
        script = address_script(str(address), p.hrp, p.p2pkh_version, p.p2sh_version)
    except AddressError as exc:
        text = str(exc) if p.v30 else str(exc).replace(" (P2PKH or P2SH)", "")  # v23's text
        raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, text) from exc
    info = w.keys.get(script)
    stype = script_type(script)
    out: dict[str, Any] = {
        "address": str(address),
        "scriptPubKey": script.hex(),
        "ismine": info is not None and info.secret is not None,
        "solvable": info is not None and info.pubkey is not None,
    }
    if info is not None:
        out["desc"] = info.desc
        if info.parent_desc:
            out["parent_desc"] = info.parent_desc
    out["iswatchonly"] = info is not None and info.secret is None
    out["isscript"] = stype in ("scripthash", "witness_v0_scripthash")
    out["iswitness"] = stype.startswith("witness")
    if out["iswitness"]:
        out["witness_version"] = 0 if script[0] == 0 else script[0] - 0x50
        out["witness_program"] = script[2:].hex()
    if info is not None and info.pubkey is not None:
        out["pubkey"] = info.pubkey.hex()
        out["iscompressed"] = True
    if info is not None:
        out["ischange"] = w.is_change(script)
        out["timestamp"] = w.birthtime
        if info.path:
            out["hdkeypath"] = info.path
            out["hdseedid"] = "0" * 40
            out["hdmasterfingerprint"] = info.desc.split("[")[1][:8]
    if not node.params.v30 or info is None:
        out.pop("iscompressed", None)
    else:
        out.pop("iscompressed", None)
    out["labels"] = [w.labels[str(address)]] if str(address) in w.labels else []
    return out


def received_by(w: Wallet, scripts: set[bytes], min_conf: int) -> int:
    total = 0
    for wtx in w.txs.values():
        depth = w.depth(wtx)
        if depth < min_conf:
            continue
        if wtx.coinbase and depth < 101:
            continue
        total += sum(o.nValue for o in wtx.tx.vout if bytes(o.scriptPubKey) in scripts)
    return total


@rpc(
    "getreceivedbyaddress",
    [A("address", "string", True), A("minconf", "number"), A("include_immature_coinbase", "bool")],
    "Returns the total amount received by the given address in transactions with at least "
    "minconf confirmations.",
    "wallet",
)
def getreceivedbyaddress(
    ctx: Ctx, address: Any, minconf: Any, include_immature_coinbase: Any
) -> Amount:
    w = ctx.wallet()
    script = address_to_script(ctx.node, str(address))
    if script not in w.keys:
        raise RPCError(RPC_WALLET_ERROR, "Address not found in wallet")
    return amount(received_by(w, {script}, as_int(minconf, 1)))


@rpc(
    "getreceivedbylabel",
    [A("label", "string", True), A("minconf", "number"), A("include_immature_coinbase", "bool")],
    "Returns the total amount received by addresses with <label> in transactions with at "
    "least [minconf] confirmations.",
    "wallet",
)
def getreceivedbylabel(
    ctx: Ctx, label: Any, minconf: Any, include_immature_coinbase: Any
) -> Amount:
    w = ctx.wallet()
    scripts = {address_to_script(ctx.node, a) for a, lab in w.labels.items() if lab == label}
    if not scripts:
        raise RPCError(-11, "Label not found in wallet")
    return amount(received_by(w, scripts, as_int(minconf, 1)))


@rpc(
    "listreceivedbyaddress",
    [
        A("minconf", "number"),
        A("include_empty", "bool"),
        A("include_watchonly", "bool"),
        A("address_filter", "string"),
        A("include_immature_coinbase", "bool"),
    ],
    "List balances by receiving address.",
    "wallet",
)
def listreceivedbyaddress(
    ctx: Ctx,
    minconf: Any,
    include_empty: Any,
    include_watchonly: Any,
    address_filter: Any,
    include_immature_coinbase: Any,
) -> list[dict[str, Any]]:
    w = ctx.wallet()
    min_conf = as_int(minconf, 1)
    rows: dict[str, dict[str, Any]] = {}
    for wtx in w.txs.values():
        depth = w.depth(wtx)
        if depth < min_conf or (wtx.coinbase and depth < 101 and not include_immature_coinbase):
            continue
        for o in wtx.tx.vout:
            script = bytes(o.scriptPubKey)
            if script not in w.keys:
                continue
            addr = w.address_of(script)
            if addr is None or addr not in w.labels:
                continue
            row = rows.setdefault(
                addr,
                {
                    "address": addr,
                    "amount": 0,
                    "confirmations": depth,
                    "label": w.labels.get(addr, ""),
                    "txids": [],
                },
            )
            row["amount"] += o.nValue
            row["confirmations"] = min(row["confirmations"], depth)
            tid = hexid(wtx.txid)
            if tid not in row["txids"]:
                row["txids"].append(tid)
    if include_empty:
        for addr, label in w.labels.items():
            rows.setdefault(
                addr,
                {"address": addr, "amount": 0, "confirmations": 0, "label": label, "txids": []},
            )
    out = []
    for addr, row in rows.items():
        if address_filter is not None and addr != address_filter:
            continue
        row["amount"] = amount(row["amount"])
        out.append(row)
    return out


@rpc(
    "listlabels",
    [A("purpose", "string")],
    "Returns the list of all labels, or labels that are assigned to addresses with a specific "
    "purpose.",
    "wallet",
)
def listlabels(ctx: Ctx, purpose: Any) -> list[str]:
    w = ctx.wallet()
    return sorted(set(w.labels.values()))


@rpc(
    "getaddressesbylabel",
    [A("label", "string", True)],
    "Returns the list of addresses assigned the specified label.",
    "wallet",
)
def getaddressesbylabel(ctx: Ctx, label: Any) -> dict[str, Any]:
    w = ctx.wallet()
    out = {a: {"purpose": "receive"} for a, lab in w.labels.items() if lab == label}
    if not out:
        raise RPCError(-11, f"No addresses with label {label}")
    return out


@rpc(
    "setlabel",
    [A("address", "string", True), A("label", "string", True)],
    "Sets the label associated with the given address.",
    "wallet",
)
def setlabel(ctx: Ctx, address: Any, label: Any) -> None:
    w = ctx.wallet()
    script = address_to_script(ctx.node, str(address))
    if script not in w.keys:
        raise RPCError(RPC_WALLET_ERROR, "Address not found in wallet")
    w.labels[str(address)] = str(label)
    ctx.node.mark_dirty()


def replaceable_text(ctx: Ctx, wtx: WalletTx) -> str:
    chain = ctx.node.chain
    if wtx.txid in chain.tx_block:
        return "no"
    m = chain.mempool.get(wtx.txid)
    if m is None:
        return "unknown"
    return "yes" if m.replaceable else "no"


def tx_common(ctx: Ctx, w: Wallet, wtx: WalletTx) -> dict[str, Any]:
    chain = ctx.node.chain
    v30 = ctx.node.params.v30
    depth = w.depth(wtx)
    out: dict[str, Any] = {"confirmations": depth}
    if wtx.coinbase:
        out["generated"] = True
    loc = chain.tx_block.get(wtx.txid)
    if loc is not None:
        entry = chain.index[loc[0]]
        out["blockhash"] = entry.hex_hash
        out["blockheight"] = entry.height
        out["blockindex"] = loc[1]
        out["blocktime"] = entry.block.nTime
    else:
        out["trusted"] = w.trusted(wtx)
    out["txid"] = hexid(wtx.txid)
    if v30:
        out["wtxid"] = hexid(blk.wtxid(wtx.tx))
    # Conflicts are looked up for unconfirmed and conflicted transactions (README).
    in_wallet, in_pool = w.conflicts(wtx) if depth <= 0 else ([], [])
    out["walletconflicts"] = [hexid(t) for t in in_wallet]
    if v30:
        out["mempoolconflicts"] = [hexid(t) for t in in_pool]
    out.update(wtx.comments)
    out["time"] = wtx.time
    out["timereceived"] = wtx.time
    out["bip125-replaceable"] = replaceable_text(ctx, wtx)
    return out


def tx_entries(
    ctx: Ctx,
    w: Wallet,
    wtx: WalletTx,
    label_filter: str | None = None,
    include_change: bool = False,
) -> list[dict[str, Any]]:
    """listtransactions entries for one wallet tx, as Core's ListTransactions builds them."""
    v30 = ctx.node.params.v30
    tx = wtx.tx
    common = tx_common(ctx, w, wtx)
    fee = w.fee(wtx)
    out: list[dict[str, Any]] = []
    if wtx.debit > 0:
        for n, o in enumerate(tx.vout):
            script = bytes(o.scriptPubKey)
            if script in w.keys and w.is_change(script) and not include_change:
                continue
            addr = w.address_of(script)
            if label_filter is not None and (addr is None or w.labels.get(addr) != label_filter):
                continue
            e: dict[str, Any] = {}
            if addr:
                e["address"] = addr
            e["category"] = "send"
            e["amount"] = amount(-o.nValue)
            if addr in w.labels:
                e["label"] = w.labels[addr or ""]
            e["vout"] = n
            e["fee"] = amount(-(fee or 0))
            e["abandoned"] = wtx.abandoned
            out.append({**e, **common})
    for n, o in enumerate(tx.vout):
        script = bytes(o.scriptPubKey)
        info = w.keys.get(script)
        if info is None or (wtx.debit > 0 and w.is_change(script) and not include_change):
            continue
        addr = w.address_of(script)
        if label_filter is not None and (addr is None or w.labels.get(addr) != label_filter):
            continue
        e = {}
        if addr:
            e["address"] = addr
        if v30 and info.parent_desc:
            e["parent_descs"] = [info.parent_desc]
        if wtx.coinbase:
            depth = w.depth(wtx)
            e["category"] = "orphan" if depth < 1 else ("immature" if depth < 101 else "generate")
        else:
            e["category"] = "receive"
        e["amount"] = amount(o.nValue)
        if addr in w.labels:
            e["label"] = w.labels[addr or ""]
        e["vout"] = n
        if v30:
            e["abandoned"] = wtx.abandoned or (wtx.coinbase and w.depth(wtx) < 1)
        out.append({**e, **common})
    return out


@rpc(
    "listtransactions",
    [
        A("label", "string"),
        A("count", "number"),
        A("skip", "number"),
        A("include_watchonly", "bool"),
    ],
    "Returns up to 'count' most recent transactions skipping the first 'from' transactions.",
    "wallet",
)
def listtransactions(
    ctx: Ctx, label: Any, count: Any, skip: Any, include_watchonly: Any
) -> list[dict[str, Any]]:
    w = ctx.wallet()
    n, k = as_int(count, 10), as_int(skip, 0)
    if n < 0:
        raise RPCError(RPC_INVALID_PARAMETER, "Negative count")
    if k < 0:
        raise RPCError(RPC_INVALID_PARAMETER, "Negative from")
    lab = None if label in (None, "*") else str(label)
    entries: list[dict[str, Any]] = []
    for wtx in sorted(w.txs.values(), key=lambda t: t.order):
        entries.extend(tx_entries(ctx, w, wtx, lab))
    end = len(entries) - k
    return entries[max(0, end - n) : max(0, end)]


@rpc(
    "listsinceblock",
    [
        A("blockhash", "string"),
        A("target_confirmations", "number"),
        A("include_watchonly", "bool"),
        A("include_removed", "bool"),
        A("include_change", "bool"),
        A("label", "string"),
    ],
    "Get all transactions in blocks since block [blockhash], or all transactions if omitted.",
    "wallet",
)
def listsinceblock(
    ctx: Ctx,
    blockhash: Any,
    target_confirmations: Any,
    include_watchonly: Any,
    include_removed: Any,
    include_change: Any,
    label: Any,
) -> dict[str, Any]:
    w = ctx.wallet()
    chain = ctx.node.chain
    target = as_int(target_confirmations, 1)
    if target < 1:
        raise RPCError(RPC_INVALID_PARAMETER, "Invalid parameter")
    since: BlockEntry | None = find_block(ctx.node, blockhash) if blockhash else None
    removed: list[dict[str, Any]] = []
    depth_limit = chain.height + 1
    if since is not None:
        cur = since
        stale: list[BlockEntry] = []
        while not chain.in_active(cur):
            stale.append(cur)
            cur = chain.index[cur.prev]
        depth_limit = chain.height + 1 - cur.height
        if as_bool(include_removed, True):
            for entry in stale:
                for tx in entry.block.vtx:
                    wtx = w.txs.get(bytes(tx.GetTxid()))
                    if wtx is not None:
                        removed.extend(
                            tx_entries(ctx, w, wtx, label, as_bool(include_change, False))
                        )
    txs: list[dict[str, Any]] = []
    for wtx in sorted(w.txs.values(), key=lambda t: t.order):
        d = w.depth(wtx)
        # Core compares abs(depth): a conflicted tx (negative depth) only within the window
        if since is None or abs(d) < depth_limit:
            txs.extend(tx_entries(ctx, w, wtx, label, as_bool(include_change, False)))
    last_height = max(0, chain.height + 1 - target)
    out: dict[str, Any] = {"transactions": txs}
    if as_bool(include_removed, True) or ctx.node.params.v30:
        out["removed"] = removed
    out["lastblock"] = chain.active[last_height][::-1].hex()
    return out


@rpc(
    "gettransaction",
    [A("txid", "string", True), A("include_watchonly", "bool"), A("verbose", "bool")],
    "Get detailed information about in-wallet transaction <txid>.",
    "wallet",
)
def gettransaction(ctx: Ctx, txid: Any, include_watchonly: Any, verbose: Any) -> dict[str, Any]:
    w = ctx.wallet()
    h = parse_hash(txid, "txid")
    wtx = w.txs.get(h)
    if wtx is None:
        raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "Invalid or non-wallet transaction id")
    credit = w.credit(wtx)
    fee = w.fee(wtx)
    net = credit - wtx.debit + (fee or 0)
    out: dict[str, Any] = {"amount": amount(net)}
    if fee is not None:
        out["fee"] = amount(-fee)
    out.update(tx_common(ctx, w, wtx))
    details = []
    for e in tx_entries(ctx, w, wtx):
        d = {
            k: v
            for k, v in e.items()
            if k
            in (
                "address",
                "parent_descs",
                "category",
                "amount",
                "label",
                "vout",
                "fee",
                "abandoned",
            )
        }
        details.append(d)
    out["details"] = details
    out["hex"] = wtx.raw.hex()
    if verbose:
        out["decoded"] = tx_json(ctx.node, wtx.tx, include_hex=False)
    if ctx.node.params.v30:
        out["lastprocessedblock"] = last_processed(ctx)
    return out


@rpc(
    "abandontransaction",
    [A("txid", "string", True)],
    "Mark in-wallet transaction <txid> as abandoned.",
    "wallet",
)
def abandontransaction(ctx: Ctx, txid: Any) -> None:
    w = ctx.wallet()
    h = parse_hash(txid, "txid")
    wtx = w.txs.get(h)
    if wtx is None:
        raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "Invalid or non-wallet transaction id")
    if h in ctx.node.chain.mempool or h in ctx.node.chain.tx_block:
        raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "Transaction not eligible for abandonment")
    wtx.abandoned = True
    ctx.node.mark_dirty()


@rpc("getbalances", [], "Returns an object with all balances in BTC.", "wallet")
def getbalances(ctx: Ctx) -> dict[str, Any]:
    w = ctx.wallet()
    b = w.balances()
    out: dict[str, Any] = {"mine": {k: amount(v) for k, v in b.items()}}
    if ctx.node.params.v30:
        out["lastprocessedblock"] = last_processed(ctx)
    return out


@rpc(
    "getbalance",
    [
        A("dummy", "string"),
        A("minconf", "number"),
        A("include_watchonly", "bool"),
        A("avoid_reuse", "bool"),
    ],
    "Returns the total available balance.",
    "wallet",
)
def getbalance(
    ctx: Ctx, dummy: Any, minconf: Any, include_watchonly: Any, avoid_reuse: Any
) -> Amount:
    w = ctx.wallet()
    if dummy is not None and dummy != "*":
        raise RPCError(-32, 'dummy first argument must be excluded or set to "*".')
    min_conf = as_int(minconf, 0)
    if min_conf == 0:
        return amount(w.balances()["trusted"])
    return amount(sum(c.value for _, c in w.spendable_coins(min_conf)))


@rpc(
    "listunspent",
    [
        A("minconf", "number"),
        A("maxconf", "number"),
        A("addresses", "array"),
        A("include_unsafe", "bool"),
        A("query_options", "object"),
    ],
    "Returns array of unspent transaction outputs with between minconf and maxconf "
    "(inclusive) confirmations.",
    "wallet",
)
def listunspent(
    ctx: Ctx, minconf: Any, maxconf: Any, addresses: Any, include_unsafe: Any, query_options: Any
) -> list[dict[str, Any]]:
    w = ctx.wallet()
    chain = ctx.node.chain
    lo, hi = as_int(minconf, 1), as_int(maxconf, 9_999_999)
    wanted = {address_to_script(ctx.node, a) for a in addresses} if addresses else None
    out = []
    for op, coin in w.spendable_coins(
        0 if lo == 0 else lo, include_untrusted=as_bool(include_unsafe, True)
    ):
        depth = 0 if coin.height < 0 else chain.height - coin.height + 1
        if depth < lo or depth > hi or (wanted is not None and coin.script not in wanted):
            continue
        info = w.keys[coin.script]
        addr = w.address_of(coin.script)
        item: dict[str, Any] = {"txid": hexid(op[0]), "vout": op[1]}
        if addr:
            item["address"] = addr
            if addr in w.labels:
                item["label"] = w.labels[addr]
        item["scriptPubKey"] = coin.script.hex()
        item["amount"] = amount(coin.value)
        item["confirmations"] = depth
        item["spendable"] = info.secret is not None
        item["solvable"] = True
        item["desc"] = info.desc
        if ctx.node.params.v30 and info.parent_desc:
            item["parent_descs"] = [info.parent_desc]
        item["safe"] = depth > 0 or (w.txs.get(op[0]) is not None and w.txs[op[0]].debit > 0)
        out.append(item)
    return out


def fee_rate_for(ctx: Ctx, fee_rate: Any, conf_target: Any) -> int:
    if fee_rate is not None:
        rate = Decimal(str(fee_rate))
        if rate < 1:
            raise RPCError(
                RPC_WALLET_ERROR,
                "Fee rate (0.000 sat/vB) is lower than the minimum fee rate setting (1.000 sat/vB)",
            )
        return int(rate)
    if ctx.node.control.fee_estimate is not None:
        return ctx.node.control.fee_estimate
    return ctx.node.fallback_fee_sat_vb


def _wallet_send(
    ctx: Ctx,
    outputs: list[tuple[bytes, int]],
    subtract: set[int],
    replaceable: Any,
    fee_rate: Any,
    conf_target: Any,
    insufficient_code: int,
    comment: Any = None,
    comment_to: Any = None,
) -> bytes:
    node = ctx.node
    w = ctx.wallet()
    for _, value in outputs:
        if value <= 0:
            raise RPCError(
                RPC_WALLET_INSUFFICIENT_FUNDS
                if insufficient_code == RPC_WALLET_INSUFFICIENT_FUNDS
                else RPC_TYPE_ERROR,
                "Transaction amount too small",
            )
    rbf = as_bool(replaceable, node.params.v30)
    tx = w.create_transaction(
        outputs, fee_rate_for(ctx, fee_rate, conf_target), subtract, rbf, insufficient_code
    )
    comments = {k: str(v) for k, v in (("comment", comment), ("to", comment_to)) if v}
    txid = w.commit(tx, comments)
    node.relay_tx(tx)
    node.mark_dirty()
    return txid


@rpc(
    "sendtoaddress",
    [
        A("address", "string", True),
        A("amount", "amount", True),
        A("comment", "string"),
        A("comment_to", "string"),
        A("subtractfeefromamount", "bool"),
        A("replaceable", "bool"),
        A("conf_target", "number"),
        A("estimate_mode", "string"),
        A("avoid_reuse", "bool"),
        A("fee_rate", "amount"),
        A("verbose", "bool"),
    ],
    "Send an amount to a given address.",
    "wallet",
)
def sendtoaddress(
    ctx: Ctx,
    address: Any,
    amount_: Any,
    comment: Any,
    comment_to: Any,
    subtractfeefromamount: Any,
    replaceable: Any,
    conf_target: Any,
    estimate_mode: Any,
    avoid_reuse: Any,
    fee_rate: Any,
    verbose: Any,
) -> Any:
    ctx.wallet()
    script = address_to_script(ctx.node, str(address))
    value = to_sats(amount_, max_money(ctx.node))
    txid = _wallet_send(
        ctx,
        [(script, value)],
        {0} if subtractfeefromamount else set(),
        replaceable,
        fee_rate,
        conf_target,
        RPC_WALLET_INSUFFICIENT_FUNDS,
        comment,
        comment_to,
    )
    if verbose:
        return {"txid": hexid(txid), "fee_reason": "Fallback fee"}
    return hexid(txid)


@rpc(
    "sendmany",
    [
        A("dummy", "string"),
        A("amounts", "object", True),
        A("minconf", "number"),
        A("comment", "string"),
        A("subtractfeefrom", "array"),
        A("replaceable", "bool"),
        A("conf_target", "number"),
        A("estimate_mode", "string"),
        A("fee_rate", "amount"),
        A("verbose", "bool"),
    ],
    "Send multiple times.",
    "wallet",
)
def sendmany(
    ctx: Ctx,
    dummy: Any,
    amounts: Any,
    minconf: Any,
    comment: Any,
    subtractfeefrom: Any,
    replaceable: Any,
    conf_target: Any,
    estimate_mode: Any,
    fee_rate: Any,
    verbose: Any,
) -> Any:
    ctx.wallet()
    if dummy not in (None, ""):
        raise RPCError(RPC_INVALID_PARAMETER, 'Dummy value must be set to ""')
    outputs = []
    subtract = set()
    for i, (addr, value) in enumerate(amounts.items()):
        outputs.append((address_to_script(ctx.node, addr), to_sats(value, max_money(ctx.node))))
        if subtractfeefrom and addr in subtractfeefrom:
            subtract.add(i)
    txid = _wallet_send(
        ctx,
        outputs,
        subtract,
        replaceable,
        fee_rate,
        conf_target,
        RPC_WALLET_INSUFFICIENT_FUNDS,
        comment,
    )
    return {"txid": hexid(txid), "fee_reason": "Fallback fee"} if verbose else hexid(txid)


@rpc(
    "send",
    [
        A("outputs", "any", True),
        A("conf_target", "number"),
        A("estimate_mode", "string"),
        A("fee_rate", "amount"),
        A("options", "object"),
    ],
    "Send a transaction.",
    "wallet",
)
def send(
    ctx: Ctx, outputs: Any, conf_target: Any, estimate_mode: Any, fee_rate: Any, options: Any
) -> dict[str, Any]:
    ctx.wallet()
    opts = options or {}
    outs = parse_outputs(ctx.node, outputs)
    subtract = {int(i) for i in opts.get("subtract_fee_from_outputs", [])}
    w = ctx.wallet()
    rate = fee_rate_for(
        ctx, fee_rate if fee_rate is not None else opts.get("fee_rate"), conf_target
    )
    tx = w.create_transaction(
        outs,
        rate,
        subtract,
        as_bool(opts.get("replaceable"), ctx.node.params.v30),
        RPC_WALLET_ERROR,
    )
    if opts.get("add_to_wallet") is False:
        return {"complete": True, "hex": tx.serialize().hex()}
    txid = w.commit(tx)
    ctx.node.relay_tx(tx)
    ctx.node.mark_dirty()
    return {"txid": hexid(txid), "complete": True}


@rpc("importdescriptors", [A("requests", "array", True)], "Import descriptors.", "wallet")
def importdescriptors(ctx: Ctx, requests: Any) -> list[dict[str, Any]]:
    w = ctx.wallet()
    out: list[dict[str, Any]] = []
    for req in requests:
        try:
            if not isinstance(req, dict) or "desc" not in req:
                raise RPCError(RPC_INVALID_PARAMETER, "Descriptor not found.")
            desc = parse_descriptor(str(req["desc"]), ctx.node.params, require_checksum=True)
            if "timestamp" not in req:
                raise RPCError(RPC_TYPE_ERROR, "Missing required timestamp field for key")
            item = {"desc": str(req["desc"]), "internal": bool(req.get("internal", False))}
            if desc.ranged:
                rng = req.get("range", [0, 999])
                item["range"] = (
                    [0, int(rng)] if isinstance(rng, int) else [int(rng[0]), int(rng[1])]
                )
            if "label" in req:
                item["label"] = str(req["label"])
            if desc.has_private and not w.private_keys_enabled:
                raise RPCError(
                    RPC_WALLET_ERROR,
                    "Cannot import private keys to a wallet with private keys disabled",
                )
            w.import_descriptor(item)
            out.append({"success": True})
        except RPCError as err:
            out.append({"success": False, "error": {"code": err.code, "message": err.message}})
    ctx.node.mark_dirty()
    return out


@rpc(
    "listdescriptors",
    [A("private", "bool")],
    "List descriptors imported into a descriptor-enabled wallet.",
    "wallet",
)
def listdescriptors(ctx: Ctx, private: Any) -> dict[str, Any]:
    w = ctx.wallet()
    descs = []
    if w.seed is not None:
        for internal in (0, 1):
            descs.append(
                {
                    "desc": w.parent_desc(internal),
                    "timestamp": w.birthtime,
                    "active": True,
                    "internal": bool(internal),
                    "range": [0, w.next_index[internal] + 999],
                    "next": w.next_index[internal],
                    "next_index": w.next_index[internal],
                }
            )
    for item in w.imported:
        from simnet.chain.crypto import with_checksum

        d = parse_descriptor(item["desc"], ctx.node.params)
        descs.append(
            {
                "desc": with_checksum(d.public_text(ctx.node.params)),
                "timestamp": w.birthtime,
                "active": False,
            }
        )
    return {"wallet_name": w.name, "descriptors": descs}


@rpc(
    "backupwallet",
    [A("destination", "string", True)],
    "Safely copies the current wallet file to the specified destination.",
    "wallet",
)
def backupwallet(ctx: Ctx, destination: Any) -> None:
    w = ctx.wallet()
    ctx.node.backup_wallet(w, str(destination))


@rpc(
    "restorewallet",
    [
        A("wallet_name", "string", True),
        A("backup_file", "string", True),
        A("load_on_startup", "bool"),
    ],
    "Restores and loads a wallet from backup.",
    "wallet",
)
def restorewallet(
    ctx: Ctx, wallet_name: Any, backup_file: Any, load_on_startup: Any
) -> dict[str, Any]:
    node = ctx.node
    name = str(wallet_name)
    path = node.wallet_path(name)
    if (path / "wallet.dat").exists() or name in node.wallets:
        raise RPCError(
            RPC_WALLET_ALREADY_EXISTS,
            f"Failed to create database path '{path}'. Database already exists.",
        )
    data = node.read_backup(str(backup_file))
    wallet = Wallet.from_backup(name, path, node.chain, data)
    node.attach_wallet(wallet)
    out: dict[str, Any] = {"name": name}
    if not node.params.v30:
        out["warning"] = ""
    return out


@rpc(
    "getblocktemplate",
    [A("template_request", "object")],
    "Returns data needed to construct a block to work on (simnet: regtest target, no long poll).",
    "mining",
)
def getblocktemplate(ctx: Ctx, template_request: Any) -> dict[str, Any]:
    node, chain = ctx.node, ctx.node.chain
    rules = (template_request or {}).get("rules") or []
    if "segwit" not in rules:
        raise RPCError(
            RPC_INVALID_PARAMETER,
            'getblocktemplate must be called with the segwit rule set (call with {"rules": '
            '["segwit"]})',
        )
    txs = chain.block_template()
    height = chain.height + 1
    entries = []
    fees = 0
    index = {bytes(tx.GetTxid()): i + 1 for i, tx in enumerate(txs)}
    for tx in txs:
        m = chain.mempool[bytes(tx.GetTxid())]
        fees += m.fee
        depends = [index[bytes(i.prevout.hash)] for i in tx.vin if bytes(i.prevout.hash) in index]
        entries.append(
            {
                "data": m.raw.hex(),
                "txid": hexid(m.txid),
                "hash": hexid(blk.wtxid(tx)),
                "depends": depends,
                "fee": m.fee,
                "sigops": 4 * len(tx.vin),
                "weight": m.weight,
            }
        )
    bits = chain.tip.block.nBits
    return {
        "capabilities": ["proposal"],
        "version": 0x20000000,
        "rules": ["csv", "!segwit", "taproot"],
        "vbavailable": {},
        "vbrequired": 0,
        "previousblockhash": chain.tip.hex_hash,
        "transactions": entries,
        "coinbaseaux": {},
        "coinbasevalue": node.params.block_subsidy(height) + fees,
        "longpollid": f"{chain.tip.hex_hash}{chain.mempool_seq}",
        "target": f"{blk.target_of(bits):064x}",
        "mintime": chain.median_time_past(chain.tip) + 1,
        "mutable": ["time", "transactions", "prevblock"],
        "noncerange": "00000000ffffffff",
        "sigoplimit": 80000,
        "sizelimit": 4000000,
        "weightlimit": 4000000,
        "curtime": chain.next_block_time(),
        "bits": f"{bits:08x}",
        "height": height,
        "default_witness_commitment": blk.witness_commitment_script(txs).hex(),
    }


@rpc(
    "submitblock",
    [A("hexdata", "string", True), A("dummy", "string")],
    "Attempts to submit new block to network.",
    "mining",
)
def submitblock(ctx: Ctx, hexdata: Any, dummy: Any) -> str | None:
    from bitcoin.core import CBlock

    node, chain = ctx.node, ctx.node.chain
    try:
        block = CBlock.deserialize(bytes.fromhex(str(hexdata)))
    except Exception as exc:  # any malformed block is Core's one decode error
        raise RPCError(-22, "Block decode failed") from exc
    if not block.vtx or not block.vtx[0].is_coinbase():
        raise RPCError(-22, "Block does not start with a coinbase")
    h = bytes(block.GetHash())
    if h in chain.index:
        return "duplicate-invalid" if chain.index[h].invalid else "duplicate"
    if bytes(block.hashMerkleRoot) != blk.merkle_root([bytes(t.GetTxid()) for t in block.vtx]):
        return "bad-txnmrklroot"
    try:
        entry = chain.submit_block(block)
    except RPCError as err:
        return err.message
    node.mark_dirty()
    if entry.invalid:
        return "bad-txns-inputs-missingorspent"
    node.relay_block(entry)
    return None
