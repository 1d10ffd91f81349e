"""The control API: the simulated outside world drives the node (mine, pay, reorg, faults).

JSON over HTTP on a loopback port; documented in simnet/README.md.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from bitcoin.core import CMutableTransaction, CMutableTxIn, CMutableTxOut, COutPoint, CTransaction
from bitcoin.core.script import CScript

from simnet.chain import blocks as blk
from simnet.chain.chainstate import COINBASE_MATURITY, hexid, unhexid
from simnet.chain.errors import RPCError

if TYPE_CHECKING:
    from simnet.chain.node import Node

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def control_routes(app: web.Application, node: Node) -> None:
    def wrap(fn: Callable[[Node, dict[str, Any]], Any]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            body: dict[str, Any] = {}
            if request.method == "POST" and request.can_read_body:
                try:
                    body = await request.json()
                except ValueError:
                    return web.json_response({"error": "body must be a JSON object"}, status=400)
            try:
                result = fn(node, body or {})
                if asyncio.iscoroutine(result):
                    result = await result
            except RPCError as err:
                return web.json_response({"error": err.message, "code": err.code}, status=400)
            except (KeyError, ValueError, TypeError) as exc:
                return web.json_response({"error": f"bad request: {exc}"}, status=400)
            node.save_if_dirty()
            return web.json_response(result)

        return handler

    app.router.add_get("/status", wrap(status))
    for name, fn in {
        "mine": mine,
        "pay": pay,
        "reorg": reorg,
        "double_spend": double_spend,
        "bump_fee": bump_fee,
        "warmup": warmup,
        "ibd": ibd,
        "fail_next": fail_next,
        "stall": stall,
        "fee_estimate": fee_estimate,
        "block_interval": block_interval,
        "crash": crash,
        "restart": restart,
        "stop": stop,
    }.items():
        app.router.add_post(f"/{name}", wrap(fn))


def status(node: Node, body: dict[str, Any]) -> dict[str, Any]:
    chain = node.chain
    assert node.world is not None
    return {
        "simulation": True,
        "coin": node.params.coin,
        "network": node.params.network,
        "emulate": node.params.emulate,
        "height": chain.height,
        "tip": chain.tip.hex_hash,
        "mempool": [hexid(t) for t in chain.mempool],
        "wallets": list(node.wallets),
        "rpc_port": node.rpc_port,
        "p2p_port": node.p2p_port,
        "zmq": [{"topic": t, "address": a} for t, a, _ in node.zmq_endpoints],
        "pid": os.getpid(),
        "datadir": str(node.datadir),
        "world_balance_sats": node.world.balances()["trusted"],
        "peers": node.peer_addresses(),
    }


def mine(node: Node, body: dict[str, Any]) -> dict[str, Any]:
    count = int(body.get("blocks", 1))
    script = node.script_for(body.get("address"))
    payouts = [
        (node.script_for(str(item["address"])), int(item["sats"]))
        for item in body.get("coinbase_outputs") or []
    ]
    hashes = [node.mine_block(script, payouts=payouts).hex_hash for _ in range(count)]
    out: dict[str, Any] = {"hashes": hashes, "height": node.chain.height}
    if payouts:
        out["coinbase_txids"] = [
            hexid(bytes(node.chain.index[unhexid(h)].block.vtx[0].GetTxid())) for h in hashes
        ]
    return out


def _fund_world(node: Node, sats: int) -> int:
    """Mine to the world wallet until it can pay `sats`; return the number of blocks mined."""
    assert node.world is not None
    mined = 0
    while node.world.balances()["trusted"] < sats + 100_000:
        missing = (
            COINBASE_MATURITY + 1 if mined == 0 and node.world.balances()["immature"] == 0 else 1
        )
        for _ in range(missing):
            node.mine_block(node.world_script())
            mined += 1
        if mined > 5000:
            raise RPCError(-6, "world wallet cannot be funded")
    return mined


def pay(node: Node, body: dict[str, Any]) -> dict[str, Any]:
    assert node.world is not None
    script = node.script_for(str(body["address"]))
    sats = int(body["sats"])
    if sats <= 0:
        raise RPCError(-3, "sats must be positive")
    mined = _fund_world(node, sats)
    rate = int(body.get("fee_rate", node.fallback_fee_sat_vb))
    replaceable = bool(body.get("replaceable", True))
    tx = node.world.create_transaction([(script, sats)], rate, set(), replaceable)
    txid = node.world.commit(tx)
    node.relay_tx(tx)
    node.mark_dirty()
    vout = next(
        n for n, o in enumerate(tx.vout) if bytes(o.scriptPubKey) == script and o.nValue == sats
    )
    return {"txid": hexid(txid), "vout": vout, "mined": mined}


def _world_spend(node: Node, txid_hex: str) -> tuple[CTransaction, list[Any]]:
    assert node.world is not None
    txid = unhexid(txid_hex)
    entry = node.chain.mempool.get(txid)
    if entry is not None:
        tx, prevouts = entry.tx, entry.prevouts
    else:
        # a world payment out of the mempool and out of the chain (a reorg with drop_txs) whose
        # inputs are still unspent can be re-spent too, as the real layer's funder wallet does
        # (on a real node the dropped payment stays in the mempool: tests/daemons.py)
        known = node.world.txs.get(txid)
        coins = (
            [node.chain.coin_view((bytes(i.prevout.hash), i.prevout.n)) for i in known.tx.vin]
            if known is not None and txid not in node.chain.tx_block
            else [None]
        )
        if known is None or any(c is None for c in coins):
            raise RPCError(
                -5, "transaction not in the mempool (only unconfirmed payments can be replaced)"
            )
        tx, prevouts = known.tx, [c for c in coins if c is not None]
    keys = node.world.keys
    if not all(c.script in keys for c in prevouts):
        raise RPCError(
            -5, "only payments made by the simulated world (control /pay) can be replaced"
        )
    return tx, prevouts


def _replace(
    node: Node,
    original: CTransaction,
    coins: list[Any],
    outputs: list[tuple[bytes, int]],
    mine_it: bool,
) -> dict[str, Any]:
    assert node.world is not None
    tx = CMutableTransaction(
        [
            CMutableTxIn(COutPoint(i.prevout.hash, i.prevout.n), CScript(), 0xFFFFFFFD)
            for i in original.vin
        ],
        [CMutableTxOut(v, CScript(s)) for s, v in outputs],
        nLockTime=node.chain.height,
        nVersion=2,
    )
    node.world.sign(tx, coins)
    final = CTransaction.from_tx(tx)
    if mine_it:
        entry = node.mine_block(node.world_script(), [final])
        node.relay_tx(final)
        return {
            "txid": hexid(bytes(final.GetTxid())),
            "replaced": hexid(bytes(original.GetTxid())),
            "block": entry.hex_hash,
        }
    node.chain.accept_tx(final, allow_replace=True)
    node.relay_tx(final)
    node.mark_dirty()
    return {"txid": hexid(bytes(final.GetTxid())), "replaced": hexid(bytes(original.GetTxid()))}


def double_spend(node: Node, body: dict[str, Any]) -> dict[str, Any]:
    """Spend the inputs of a world payment back to the world: the payee never gets paid."""
    original, coins = _world_spend(node, str(body["txid"]))
    total = sum(c.value for c in coins)
    old_fee = total - sum(o.nValue for o in original.vout)
    fee = old_fee + blk.tx_vsize(original) * 2 + 1000
    return _replace(
        node, original, coins, [(node.world_script(), total - fee)], bool(body.get("mine", False))
    )


def bump_fee(node: Node, body: dict[str, Any]) -> dict[str, Any]:
    """RBF: the same payment at a higher fee (taken from the world's change output)."""
    assert node.world is not None
    original, coins = _world_spend(node, str(body["txid"]))
    total = sum(c.value for c in coins)
    vsize = blk.tx_vsize(original)
    new_fee = max(
        int(body.get("fee_rate", 0)) * vsize,
        total - sum(o.nValue for o in original.vout) + vsize + 1000,
    )
    outputs = [(bytes(o.scriptPubKey), o.nValue) for o in original.vout]
    change = [i for i, (s, _) in enumerate(outputs) if s in node.world.keys]
    extra = new_fee - (total - sum(v for _, v in outputs))
    if not change or outputs[change[0]][1] - extra <= 1000:
        raise RPCError(-6, "no world change output large enough to pay the higher fee")
    s, v = outputs[change[0]]
    outputs[change[0]] = (s, v - extra)
    return _replace(node, original, coins, outputs, bool(body.get("mine", False)))


def reorg(node: Node, body: dict[str, Any]) -> dict[str, Any]:
    """Replace the last `depth` blocks by `depth + extra` new ones (ZMQ: D..., C..., A/R)."""
    chain = node.chain
    depth = int(body.get("depth", 1))
    extra = int(body.get("extra", 1))
    drop = bool(body.get("drop_txs", False))
    if depth < 1 or depth > chain.height:
        raise RPCError(-8, "depth must be between 1 and the chain height")
    fork = chain.at_height(chain.height - depth)
    old = [chain.at_height(h) for h in range(fork.height + 1, chain.height + 1)]
    txs = [tx for e in old for tx in e.block.vtx[1:]]
    script = node.script_for(body.get("address"))
    prev = fork
    t = max(int(time.time()), max(e.block.nTime for e in old) + 1)
    new_entries = []
    for i in range(depth + extra):
        height = prev.height + 1
        include = txs if (i == 0 and not drop) else []
        fees = 0
        for tx in include:
            coins = chain.prevouts.get(bytes(tx.GetTxid()), [])
            fees += sum(c.value for c in coins) - sum(o.nValue for o in tx.vout)
        coinbase = blk.make_coinbase(
            height, script, node.params.block_subsidy(height) + fees, include, os.urandom(4)
        )
        block = blk.build_block(prev.hash, height, t + i, prev.block.nBits, coinbase, include)
        prev = chain.add_block(block)
        new_entries.append(prev)
    chain.activate_best_chain()
    if drop:
        for tx in txs:
            if bytes(tx.GetTxid()) in chain.mempool:
                chain.remove_from_mempool(bytes(tx.GetTxid()))
    node.mark_dirty()
    for entry in new_entries:
        node.relay_block(entry)
    return {
        "old_tip": old[-1].hex_hash,
        "new_tip": chain.tip.hex_hash,
        "disconnected": [e.hex_hash for e in old],
        "connected": [e.hex_hash for e in new_entries],
        "height": chain.height,
    }


def warmup(node: Node, body: dict[str, Any]) -> dict[str, Any]:
    message = body.get("message", "Loading block index…")
    node.control.warmup = message
    seconds = body.get("seconds")
    node.control.warmup_until = time.time() + float(seconds) if seconds and message else None
    return {"warmup": message}


def ibd(node: Node, body: dict[str, Any]) -> dict[str, Any]:
    node.control.ibd = body.get("active")
    return {"ibd": node.control.ibd}


def fail_next(node: Node, body: dict[str, Any]) -> dict[str, Any]:
    item = {
        "code": int(body.get("code", -1)),
        "message": str(body.get("message", "simulated failure")),
        "method": body.get("method"),
        "count": int(body.get("count", 1)),
    }
    node.control.fail.append(item)
    return {"queued": item}


def stall(node: Node, body: dict[str, Any]) -> dict[str, Any]:
    item = {
        "seconds": float(body.get("seconds", 5)),
        "method": body.get("method"),
        "count": int(body.get("count", 1)),
    }
    node.control.stall.append(item)
    return {"queued": item}


def fee_estimate(node: Node, body: dict[str, Any]) -> dict[str, Any]:
    rate = body.get("sat_per_vb")
    node.control.fee_estimate = None if rate is None else int(rate)
    return {"sat_per_vb": node.control.fee_estimate}


def block_interval(node: Node, body: dict[str, Any]) -> dict[str, Any]:
    seconds = body.get("seconds")
    node.control.block_interval = None if not seconds else float(seconds)
    return {"seconds": node.control.block_interval}


def crash(node: Node, body: dict[str, Any]) -> dict[str, Any]:
    """Exit at once: no clean shutdown (the cookie and pid file stay), state is what was saved."""
    node.log("simnet: crash requested through the control API")
    asyncio.get_running_loop().call_later(0.05, os._exit, 137)
    return {"crashing": True}


def restart(node: Node, body: dict[str, Any]) -> dict[str, Any]:
    """Re-execute the same command line in the same process id (clean or as after a crash)."""
    from simnet.chain.node import restart_argv

    clean = bool(body.get("clean", True))

    def again() -> None:
        if clean:
            node.save()
            if node.cookie_path is not None and node.cookie_path.exists():
                node.cookie_path.unlink()
        for runner_sock in (sys.stdout, sys.stderr):
            runner_sock.flush()
        os.execv(sys.executable, restart_argv(node))  # noqa: S606 - same interpreter, same argv

    asyncio.get_running_loop().call_later(0.05, again)
    return {"restarting": True, "clean": clean}


def stop(node: Node, body: dict[str, Any]) -> dict[str, Any]:
    node.request_stop()
    return {"stopping": True}
