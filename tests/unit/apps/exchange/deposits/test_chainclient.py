"""The chain API client against a small fake chain API (aiohttp server on 127.0.0.1): typed
errors, the auth header, and an events stream that resumes after a dropped connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from scnode_exchange.chainclient import (
    Backoff,
    ChainApiAuthError,
    ChainApiClient,
    ChainApiConflictError,
    ChainApiNotFoundError,
    ChainApiRequestError,
    ChainApiRetryableError,
    ChainApiWarmingUpError,
    ChainEvent,
)

KEY = "test-key-" + "x" * 20


class FakeChainApi:
    """Enough of scnode_chain_api's routes to exercise the client."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = [
            {"id": i, "time": 0.0, "kind": "wallet_tx", "data": {"n": i}} for i in range(1, 8)
        ]
        self.ws_cursors: list[int] = []
        self.drop_after = 3  # the first WebSocket closes after this many events
        self.sends: dict[str, dict[str, Any]] = {}
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> str:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/v1/status", self._status)
        app.router.add_post("/v1/members/{member}/addresses", self._address)
        app.router.add_get("/v1/transactions/{txid}", self._tx)
        app.router.add_post("/v1/send", self._send)
        app.router.add_get("/v1/events/recent", self._recent)
        app.router.add_get("/v1/events/ws", self._ws)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = int(self.runner.addresses[0][1])
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"detail": "API key not valid"}, status=401)
        return await handler(request)

    async def _status(self, request: web.Request) -> web.Response:
        mode = request.query.get("mode")
        if mode == "warming":
            return web.json_response({"detail": "bitcoin daemon is starting: Loading"}, status=503)
        return web.json_response({"chain": "bitcoin", "blocks": 101})

    async def _address(self, request: web.Request) -> web.Response:
        reuse = request.query.get("reuse_unused") == "true"
        member = request.match_info["member"]
        return web.json_response(
            {"member_id": member, "address": f"bcrt1q{member}", "new": not reuse}, status=201
        )

    async def _tx(self, request: web.Request) -> web.Response:
        txid = request.match_info["txid"]
        if txid == "bad":
            return web.json_response({"detail": "txid must be 64 hex characters"}, status=422)
        if txid == "boom":
            return web.json_response({"detail": "bitcoin daemon unavailable"}, status=503)
        return web.json_response({"detail": "transaction not in this node's wallet"}, status=404)

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = body["idempotency_key"]
        if key in self.sends:
            if self.sends[key] != body:
                return web.json_response({"detail": "key reused"}, status=409)
            return web.json_response(
                {"txid": "ab" * 32, "idempotency_key": key, "replayed": True}, status=200
            )
        self.sends[key] = body
        return web.json_response(
            {"txid": "ab" * 32, "idempotency_key": key, "replayed": False}, status=201
        )

    async def _recent(self, request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", "100"))
        return web.json_response({"events": self.events[-limit:]})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        cursor = int(request.query["cursor"])
        self.ws_cursors.append(cursor)
        sent = 0
        while not ws.closed:
            for event in [e for e in self.events if e["id"] > cursor]:
                await ws.send_str(json.dumps(event))
                cursor = event["id"]
                sent += 1
                if len(self.ws_cursors) == 1 and sent == self.drop_after:
                    await ws.close()
                    return ws
            with contextlib.suppress(TimeoutError):  # reading answers a close frame
                await ws.receive(timeout=0.02)
        return ws


def _run(scenario: Callable[[FakeChainApi, ChainApiClient], Awaitable[None]]) -> None:
    async def main() -> None:
        fake = FakeChainApi()
        url = await fake.start()
        client = ChainApiClient(url, KEY, timeout=5, backoff=Backoff(initial=0.01, maximum=0.05))
        try:
            await scenario(fake, client)
        finally:
            await client.aclose()
            await fake.stop()

    asyncio.run(main())


def test_routes_return_typed_answers_and_send_replays_under_its_key() -> None:
    async def scenario(fake: FakeChainApi, client: ChainApiClient) -> None:
        assert (await client.status())["blocks"] == 101
        current = await client.new_address(7, fresh=False)
        assert (current.member_id, current.new) == ("7", False)
        assert (await client.new_address(7, fresh=True)).new is True
        first = await client.send("bcrt1qxyz", 1_000, "withdrawal:1:send")
        again = await client.send("bcrt1qxyz", 1_000, "withdrawal:1:send")
        assert (first.replayed, again.replayed, again.txid) == (False, True, first.txid)
        with pytest.raises(ChainApiConflictError):
            await client.send("bcrt1qxyz", 2_000, "withdrawal:1:send")
        with pytest.raises(TypeError):
            await client.send("bcrt1qxyz", 1.5, "withdrawal:2:send")  # type: ignore[arg-type]

    _run(scenario)


def test_errors_say_whether_a_retry_can_help() -> None:
    async def scenario(fake: FakeChainApi, client: ChainApiClient) -> None:
        with pytest.raises(ChainApiNotFoundError) as missing:
            await client.transaction("ff" * 32)
        assert missing.value.status == 404
        assert not isinstance(missing.value, ChainApiRetryableError)
        with pytest.raises(ChainApiRequestError) as invalid:
            await client.transaction("bad")
        assert invalid.value.status == 422
        with pytest.raises(ChainApiRetryableError):
            await client.transaction("boom")
        with pytest.raises(ChainApiWarmingUpError):
            await client.request("GET", "/v1/status", params={"mode": "warming"})
        wrong = ChainApiClient(client.base_url, "wrong-key-" + "y" * 20)
        try:
            with pytest.raises(ChainApiAuthError):
                await wrong.status()
        finally:
            await wrong.aclose()
        await fake.stop()
        with pytest.raises(ChainApiRetryableError):
            await client.status()
        fake.runner = web.AppRunner(web.Application())
        await fake.runner.setup()

    _run(scenario)


def test_events_resume_after_the_last_event_handed_out_when_the_socket_drops() -> None:
    async def scenario(fake: FakeChainApi, client: ChainApiClient) -> None:
        stop = asyncio.Event()
        seen: list[ChainEvent] = []
        async for event in client.events(2, stop=stop):
            seen.append(event)
            if event.id == 7:
                stop.set()
        assert [e.id for e in seen] == [3, 4, 5, 6, 7]
        # the first socket dropped after 3 events: the second asked from the last one seen
        assert fake.ws_cursors[:2] == [2, 5]

    _run(scenario)


def test_events_from_now_start_at_the_journal_tip() -> None:
    async def scenario(fake: FakeChainApi, client: ChainApiClient) -> None:
        stop = asyncio.Event()
        got: list[int] = []

        async def consume() -> None:
            async for event in client.events(None, stop=stop):
                got.append(event.id)
                stop.set()

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.2)
        assert got == []  # the seven old events are not replayed
        fake.events.append({"id": 8, "time": 0.0, "kind": "block", "data": {}})
        await asyncio.wait_for(task, 5)
        assert fake.ws_cursors == [7]
        assert got == [8]

    _run(scenario)


def test_a_journal_that_restarted_below_the_cursor_is_a_resync() -> None:
    async def scenario(fake: FakeChainApi, client: ChainApiClient) -> None:
        stop = asyncio.Event()
        seen: list[tuple[int, str]] = []
        async for event in client.events(2, stop=stop):
            seen.append((event.id, event.kind))
            if event.id == 5:  # the first socket drops here; the API "loses" its journal
                fake.events = [{"id": 1, "time": 0.0, "kind": "block", "data": {}}]
            if event.kind == "block":
                stop.set()
        assert seen == [(3, "wallet_tx"), (4, "wallet_tx"), (5, "wallet_tx"), (5, "resync"),
                        (1, "block")]  # fmt: skip
        assert fake.ws_cursors[:2] == [2, 0]

    _run(scenario)
