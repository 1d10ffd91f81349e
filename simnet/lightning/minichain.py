"""A tiny regtest bitcoind for the Lightning stand-in's own tests (until simnet.chain is usable).

Serves the calls lightningd's bcli plugin makes (getblockchaininfo, getblockcount, getblockhash,
getblock with verbosity 0, sendrawtransaction, estimatesmartfee, getrawtransaction) with real
serialized blocks and transactions, plus `generatetoaddress`, `pruneblockchain` and the
simulation-only `simnet_pay <address> <sats>` that pays an address from nowhere. No validation
and no wallet: it is test equipment. Usage: `python -m simnet.lightning.minichain PORT USER PASS`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from typing import Any

from aiohttp import web
from bitcoin.core import (
    CBlock,
    CMutableTxIn,
    CMutableTxOut,
    COutPoint,
    CScript,
    CTransaction,
    b2lx,
)

from simnet.lightning import bech32

HRP = "bcrt"


class MiniChain:
    """Blocks in memory; the mempool is mined by generatetoaddress."""

    def __init__(self) -> None:
        self.blocks: list[CBlock] = []
        self.mempool: list[CTransaction] = []
        self.pruned_below = 0
        self.txindex: dict[str, tuple[int, CTransaction]] = {}
        self._mine(b"\x51", 101)

    def _coinbase(self, height: int, script: bytes) -> CTransaction:
        return CTransaction(
            [
                CMutableTxIn(
                    COutPoint(), CScript(bytes([3]) + height.to_bytes(3, "little") + os.urandom(4))
                )
            ],
            [CMutableTxOut(50 * 10**8, CScript(script))],
            nVersion=2,
        )

    def _mine(self, script: bytes, count: int) -> list[str]:
        hashes = []
        for _ in range(count):
            height = len(self.blocks)
            prev = self.blocks[-1].GetHash() if self.blocks else b"\x00" * 32
            vtx = [self._coinbase(height, script), *self.mempool]
            self.mempool = []
            block = CBlock(
                nVersion=0x20000000,
                hashPrevBlock=prev,
                nTime=int(time.time()),
                nBits=0x207FFFFF,
                nNonce=height,
                vtx=vtx,
            )
            block = CBlock(
                nVersion=block.nVersion,
                hashPrevBlock=prev,
                hashMerkleRoot=block.calc_merkle_root(),
                nTime=block.nTime,
                nBits=block.nBits,
                nNonce=block.nNonce,
                vtx=vtx,
            )
            self.blocks.append(block)
            for tx in vtx:
                self.txindex[b2lx(tx.GetTxid())] = (height, tx)
            hashes.append(b2lx(block.GetHash()))
        return hashes

    def call(self, method: str, params: list[Any]) -> Any:
        """Dispatch one JSON-RPC call; raises (code, message) tuples as RpcError."""
        tip = len(self.blocks) - 1
        if method == "getblockcount":
            return tip
        if method == "getblockchaininfo":
            return {
                "chain": "regtest",
                "blocks": tip,
                "headers": tip,
                "bestblockhash": b2lx(self.blocks[-1].GetHash()),
                "initialblockdownload": False,
                "pruned": self.pruned_below > 0,
                "verificationprogress": 1,
                "warnings": [],
            }
        if method == "getnetworkinfo":
            return {
                "version": 300000,
                "subversion": "/Satoshi:30.0.0(simnet minichain SIMULATION)/",
            }
        if method == "getblockhash":
            height = int(params[0])
            if not 0 <= height <= tip:
                raise RpcError(-8, "Block height out of range")
            return b2lx(self.blocks[height].GetHash())
        if method == "getblock":
            for height, block in enumerate(self.blocks):
                if b2lx(block.GetHash()) == params[0]:
                    if height < self.pruned_below:
                        raise RpcError(-1, "Block not available (pruned data)")
                    verbosity = int(params[1]) if len(params) > 1 else 1
                    if verbosity == 0:
                        return block.serialize().hex()
                    return {
                        "hash": params[0],
                        "height": height,
                        "tx": [b2lx(t.GetTxid()) for t in block.vtx],
                    }
            raise RpcError(-5, "Block not found")
        if method == "sendrawtransaction":
            tx = CTransaction.deserialize(bytes.fromhex(params[0]))
            txid = b2lx(tx.GetTxid())
            if txid in self.txindex:
                raise RpcError(-27, "Transaction already in block chain")
            if all(b2lx(t.GetTxid()) != txid for t in self.mempool):
                self.mempool.append(tx)
            return txid
        if method == "getrawtransaction":
            txid = str(params[0])
            for tx in self.mempool:
                if b2lx(tx.GetTxid()) == txid:
                    return tx.serialize().hex()
            if txid in self.txindex:
                return self.txindex[txid][1].serialize().hex()
            raise RpcError(-5, "No such mempool or blockchain transaction")
        if method == "getrawmempool":
            return [b2lx(t.GetTxid()) for t in self.mempool]
        if method == "estimatesmartfee":
            return {"feerate": 0.00001012, "blocks": int(params[0])}
        if method == "generatetoaddress":
            return self._mine(bech32.script_for_address(HRP, params[1]), int(params[0]))
        if method == "pruneblockchain":
            self.pruned_below = min(int(params[0]), tip)
            return self.pruned_below - 1
        if method == "simnet_pay":
            script = bech32.script_for_address(HRP, params[0])
            tx = CTransaction(
                [CMutableTxIn(COutPoint(hashlib.sha256(os.urandom(32)).digest(), 0))],
                [CMutableTxOut(int(params[1]), CScript(script))],
                nVersion=2,
            )
            self.mempool.append(tx)
            return b2lx(tx.GetTxid())
        raise RpcError(-32601, "Method not found")


class RpcError(Exception):
    """A bitcoind error object."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def make_app(chain: MiniChain, user: str, password: str) -> web.Application:
    """The HTTP JSON-RPC front of a MiniChain."""
    import base64

    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async def handle(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="jsonrpc"'})
        req = json.loads(await request.read())
        try:
            result = chain.call(req["method"], list(req.get("params") or []))
            body = {"result": result, "error": None, "id": req.get("id")}
            status = 200
        except RpcError as exc:
            body = {
                "result": None,
                "error": {"code": exc.code, "message": exc.message},
                "id": req.get("id"),
            }
            status = 404 if exc.code == -32601 else 500
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_post("/", handle)
    return app


def main() -> None:
    """Run on 127.0.0.1:PORT until killed."""
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    print(
        "simnet minichain: a SIMULATION of bitcoind (regtest) for Lightning stand-in tests",
        flush=True,
    )
    web.run_app(make_app(MiniChain(), user, password), host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
