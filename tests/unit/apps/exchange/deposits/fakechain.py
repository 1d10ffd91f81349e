"""A small in-process chain API for the watcher's unit tests: a wallet of receive outputs,
blocks, reorgs and the event journal, served on 127.0.0.1 with the chain API's routes and
event shapes (``wallet_tx``, ``tx_removed``, ``block``; WebSocket with ``?cursor=``). The real
chain API against the simnet stand-in is exercised in tests/integration/exchange_deposits/."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

KEY = "deposit-test-key-" + "k" * 24


@dataclass
class Output:
    txid: str
    vout: int
    address: str
    amount: int
    height: int | None = None  # block height, None while in the mempool
    gone: bool = False


class FakeChainApi:
    def __init__(self) -> None:
        self.height = 100
        self.outputs: dict[tuple[str, int], Output] = {}
        self.labels: dict[str, str] = {}  # address -> member label
        self.journal: list[dict[str, Any]] = []
        self.first_id = 1  # ids below were pruned
        self.duplicate_events = False
        self.runner: web.AppRunner | None = None
        self.url = ""
        self._n = 0
        self.sockets: set[web.WebSocketResponse] = set()

    # -- the simulated wallet ----------------------------------------------------------------
    def block_hash(self, height: int) -> str:
        return hashlib.sha256(f"block{height}".encode()).hexdigest()

    def confirmations(self, out: Output) -> int:
        if out.gone:
            return -1
        return 0 if out.height is None else self.height - out.height + 1

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        for _ in range(2 if self.duplicate_events else 1):  # duplicates: same data, new id
            event_id = self.first_id + len(self.journal)
            self.journal.append({"id": event_id, "time": time.time(), "kind": kind, "data": data})

    def _event_data(self, out: Output) -> dict[str, Any]:
        height = out.height
        return {
            "txid": out.txid, "vout": out.vout, "address": out.address,
            "label": self.labels.get(out.address, ""), "category": "receive",
            "amount_sats": out.amount, "confirmations": self.confirmations(out),
            "blockhash": self.block_hash(height) if height is not None and not out.gone else None,
        }  # fmt: skip

    def new_address(self, label: str) -> str:
        self._n += 1
        address = f"bcrt1q{label}x{self._n:04d}"
        self.labels[address] = label
        return address

    def pay(self, address: str, amount: int, vout: int = 0) -> str:
        self._n += 1
        txid = hashlib.sha256(f"tx{self._n}".encode()).hexdigest()
        out = Output(txid, vout, address, amount)
        self.outputs[(txid, vout)] = out
        self.publish("wallet_tx", self._event_data(out))
        return txid

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self.height += 1
            for out in self.outputs.values():
                if out.height is None and not out.gone:
                    out.height = self.height
            self.publish("block", {"hash": self.block_hash(self.height), "height": self.height})
            for out in self.outputs.values():
                if not out.gone and self.confirmations(out) <= 12:
                    self.publish("wallet_tx", self._event_data(out))

    def drop(self, txid: str) -> None:
        """A reorg that removes the transaction from the chain and the mempool for good."""
        for out in self.outputs.values():
            if out.txid == txid:
                out.gone = True
                self.publish("tx_removed", {**self._event_data(out), "reason": "gone",
                                            "back_in_mempool": False})  # fmt: skip

    def prune_journal(self) -> None:
        """The journal forgets all but its newest event (a chain API with a short retention:
        the real one prunes to its newest ``event_retention`` events, never to none)."""
        kept = self.journal[-1:]
        self.first_id += len(self.journal) - len(kept)
        self.journal = kept

    # -- the HTTP side -----------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/v1/status", self._status)
        app.router.add_get("/v1/events/recent", self._recent)
        app.router.add_get("/v1/events/ws", self._ws)
        app.router.add_get("/v1/members/{member}/addresses", self._member_addresses)
        app.router.add_post("/v1/members/{member}/addresses", self._new_address)
        app.router.add_get("/v1/transactions/{txid}", self._transaction)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        if self.runner is not None:
            await self.runner.cleanup()

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"detail": "API key not valid"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def _status(self, _: web.Request) -> web.Response:
        return web.json_response({"chain": "bitcoin", "blocks": self.height})

    async def _recent(self, request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", "100"))
        return web.json_response({"events": self.journal[-limit:]})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.add(ws)
        cursor = int(request.query["cursor"])
        if self.journal and cursor < self.first_id - 1:  # as the chain API: oldest and …
            await ws.send_str(json.dumps({"kind": "resync", "oldest": self.first_id}))
        try:
            while not ws.closed:
                for event in [e for e in self.journal if e["id"] > cursor]:
                    await ws.send_str(json.dumps(event))
                    cursor = event["id"]
                with contextlib.suppress(TimeoutError):
                    await ws.receive(timeout=0.02)
        finally:
            self.sockets.discard(ws)
        return ws

    async def _member_addresses(self, request: web.Request) -> web.Response:
        member = request.match_info["member"]
        rows = [
            {
                "address": address,
                "txids": sorted({o.txid for o in self.outputs.values() if o.address == address}),
            }
            for address, label in sorted(self.labels.items())
            if label == member
        ]
        return web.json_response({"member_id": member, "addresses": rows})

    async def _new_address(self, request: web.Request) -> web.Response:
        member = request.match_info["member"]
        reuse = request.query.get("reuse_unused") == "true"
        if reuse:
            used = {o.address for o in self.outputs.values()}
            for address, label in sorted(self.labels.items()):
                if label == member and address not in used:
                    return web.json_response(
                        {"member_id": member, "address": address, "new": False}, status=201
                    )
        address = self.new_address(member)
        return web.json_response({"member_id": member, "address": address, "new": True}, status=201)

    async def _transaction(self, request: web.Request) -> web.Response:
        txid = request.match_info["txid"]
        outs = [o for o in self.outputs.values() if o.txid == txid]
        if not outs or all(o.gone for o in outs):
            return web.json_response(
                {"detail": "transaction not in this node's wallet"}, status=404
            )
        first = outs[0]
        return web.json_response(
            {
                "txid": txid,
                "confirmations": self.confirmations(first),
                "blockhash": self.block_hash(first.height) if first.height else None,
                "blockheight": first.height,
                "details": [
                    {
                        "address": o.address,
                        "category": "receive",
                        "amount_sats": o.amount,
                        "label": self.labels.get(o.address),
                        "vout": o.vout,
                    }
                    for o in outs
                ],
            }
        )


async def wait_for(predicate: Any, within: float = 15.0) -> None:
    """Poll ``predicate()`` (sync) until true."""
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
