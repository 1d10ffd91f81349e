"""The exchange's API clients take their key from the key file on every request: a rotated key
file is used without rebuilding the client, and a 401 re-reads the file once and repeats that
one request with the new key (same body, same idempotency key) — never on any other refusal.

A small fake API on 127.0.0.1 records every request with the key it carried."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from scnode_core.keyfile import KeySource
from scnode_exchange.chainclient import ChainApiAuthError, ChainApiClient, ChainEvent
from scnode_exchange.lightning.client import LightningApiClient
from scnode_exchange.mining.settings import PoolSettings
from scnode_exchange.mining.statsclient import StatsApiError, StratumWorkClient
from scnode_exchange.settings import ChainSettings, LightningSettings, client_key
from tests.integration.exchange_keyreload.keyfiles import rewrite_unseen


def new_key() -> str:
    return f"scnk_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"


class FakeApi:
    """Accepts the keys in ``valid`` (403 for those in ``unscoped``); records each request."""

    def __init__(self) -> None:
        self.valid: set[str] = set()
        self.unscoped: set[str] = set()
        self.seen: list[tuple[str, str, Any]] = []  # (path, key, JSON body)
        self.events: list[dict[str, Any]] = [
            {"id": i, "time": 0.0, "kind": "block", "data": {"n": i}} for i in (1, 2, 3)
        ]
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/v1/status", self._ok)
        app.router.add_post("/v1/send", self._send)
        app.router.add_post("/v1/payments", self._pay)
        app.router.add_get("/v1/events/recent", self._recent)
        app.router.add_get("/v1/events/ws", self._ws)
        app.router.add_get("/v1/stratum/work", self._work)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    @staticmethod
    def key_of(request: web.Request) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ")

    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        key = self.key_of(request)
        body = await request.json() if request.can_read_body else None
        self.seen.append((request.path, key, body))
        if request.path == "/v1/events/ws":  # authenticated after the upgrade, as the APIs do
            return await handler(request)
        if key not in self.valid:
            return web.json_response({"detail": "API key not valid"}, status=401)
        if key in self.unscoped:
            return web.json_response({"detail": "the key lacks the scope"}, status=403)
        return await handler(request)

    async def _ok(self, request: web.Request) -> web.Response:
        return web.json_response({"chain": "bitcoin"})

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(
            {"txid": "ab" * 32, "idempotency_key": body["idempotency_key"], "replayed": False}
        )

    async def _pay(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"state": "complete", "idempotency_key": body["idempotency_key"]})

    async def _recent(self, request: web.Request) -> web.Response:
        return web.json_response({"events": self.events[-int(request.query["limit"]) :]})

    async def _work(self, request: web.Request) -> web.Response:
        return web.json_response({"workers": {"alice.rig1": {"accepted_difficulty": 2.0}}})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if self.key_of(request) not in self.valid:
            await ws.close(code=4401)
            return ws
        cursor = int(request.query["cursor"])
        for event in self.events:
            if event["id"] > cursor:
                await ws.send_json(event)
        async for _ in ws:  # held open until the client leaves
            pass
        return ws


def replace(path: Path, key: str) -> None:
    """Replace the key file the way the api_key module does: a new file renamed over it."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text(key + "\n", encoding="utf-8")
    tmp.replace(path)


def serve(scenario: Callable[[FakeApi], Awaitable[None]]) -> FakeApi:
    """Run ``scenario`` against a fresh fake API; the API (with its record) afterwards."""
    api = FakeApi()

    async def main() -> None:
        await api.start()
        try:
            await asyncio.wait_for(scenario(api), 20)
        finally:
            assert api.runner is not None
            await api.runner.cleanup()

    asyncio.run(main())
    return api


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "chain-api-bitcoin.key"
    path.write_text(new_key() + "\n", encoding="utf-8")
    return path


def test_a_rotated_key_file_is_used_by_the_next_request(key_file: Path) -> None:
    old, new = key_file.read_text().strip(), new_key()

    async def scenario(api: FakeApi) -> None:
        api.valid = {old}
        async with ChainApiClient(api.url, KeySource.from_file(key_file)) as client:
            await client.status()
            # the rotation: the API knows the new key, the client's file is replaced, the old
            # key is revoked (grace 0); the same client object goes on
            api.valid = {new}
            replace(key_file, new)
            await client.status()
            await client.status()

    api = serve(scenario)
    assert [key for _, key, _ in api.seen] == [old, new, new]


def test_a_send_refused_401_is_repeated_once_with_the_new_key_and_same_body(
    key_file: Path,
) -> None:
    old, new = key_file.read_text().strip(), new_key()

    async def scenario(api: FakeApi) -> None:
        api.valid = {new}
        async with ChainApiClient(api.url, KeySource.from_file(key_file)) as client:
            rewrite_unseen(key_file, new)  # the client still sends the old key: 401
            result = await client.send("bcrt1qmember", 25_000, "wd-42")
            assert result.idempotency_key == "wd-42"

    api = serve(scenario)
    assert [(path, key) for path, key, _ in api.seen] == [("/v1/send", old), ("/v1/send", new)]
    assert api.seen[0][2] == api.seen[1][2]
    assert api.seen[1][2]["idempotency_key"] == "wd-42"


def test_a_lightning_payment_refused_401_is_repeated_once_under_its_key(key_file: Path) -> None:
    old, new = key_file.read_text().strip(), new_key()

    async def scenario(api: FakeApi) -> None:
        api.valid = {old}
        client = LightningApiClient(api.url, KeySource.from_file(key_file))
        try:
            await client.status()
            api.valid = {new}
            rewrite_unseen(key_file, new)
            paid = await client.pay(
                member="7", idempotency_key="lnpay-9", bolt11="lnbcrt1...", max_fee_msat=1000
            )
            assert paid["state"] == "complete"
        finally:
            await client.aclose()

    api = serve(scenario)
    pays = [(key, body) for path, key, body in api.seen if path == "/v1/payments"]
    assert [key for key, _ in pays] == [old, new]
    assert pays[0][1] == pays[1][1] and pays[1][1]["idempotency_key"] == "lnpay-9"


def test_no_repeat_when_the_key_file_holds_the_refused_key_or_on_403(key_file: Path) -> None:
    key = key_file.read_text().strip()

    async def scenario(api: FakeApi) -> None:
        async with ChainApiClient(api.url, KeySource.from_file(key_file)) as client:
            with pytest.raises(ChainApiAuthError) as refused:
                await client.send("bcrt1qmember", 25_000, "wd-1")  # revoked, no new key
            assert refused.value.status == 401
            api.valid = {key}
            api.unscoped = {key}
            rewrite_unseen(key_file, new_key())  # another key in the file: no matter on a 403
            with pytest.raises(ChainApiAuthError) as forbidden:
                await client.send("bcrt1qmember", 25_000, "wd-2")
            assert forbidden.value.status == 403

    api = serve(scenario)
    assert [path for path, _, _ in api.seen] == ["/v1/send", "/v1/send"]


def test_a_plain_string_key_is_sent_and_never_retried() -> None:
    key = new_key()

    async def scenario(api: FakeApi) -> None:
        async with ChainApiClient(api.url, key) as client:
            with pytest.raises(ChainApiAuthError):
                await client.status()
            api.valid = {key}
            assert await client.status() == {"chain": "bitcoin"}

    api = serve(scenario)
    assert [k for _, k, _ in api.seen] == [key, key]


def test_the_events_stream_reconnects_with_the_new_key_after_4401(key_file: Path) -> None:
    old, new = key_file.read_text().strip(), new_key()
    got: list[ChainEvent] = []

    async def scenario(api: FakeApi) -> None:
        api.valid = {new}
        client = ChainApiClient(api.url, KeySource.from_file(key_file))
        rewrite_unseen(key_file, new)  # the client still holds the old key: closed with 4401
        stop = asyncio.Event()
        try:
            async for event in client.events(0, stop=stop):
                got.append(event)
                if len(got) == 3:
                    stop.set()
        finally:
            await client.aclose()

    api = serve(scenario)
    assert [e.id for e in got] == [1, 2, 3]
    assert [key for path, key, _ in api.seen if path == "/v1/events/ws"] == [old, new]


def test_the_stats_client_follows_its_key_file(key_file: Path) -> None:
    old, new = key_file.read_text().strip(), new_key()

    async def scenario(api: FakeApi) -> None:
        api.valid = {old}
        client = StratumWorkClient(api.url, KeySource.from_file(key_file))
        try:
            assert await client.work(0, 60) == {"alice.rig1": 2.0}
            api.valid = {new}
            rewrite_unseen(key_file, new)  # 401, re-read, asked again
            assert await client.work(0, 60) == {"alice.rig1": 2.0}
            api.valid = set()
            with pytest.raises(StatsApiError, match="401"):
                await client.work(0, 60)
            assert old not in repr(client) and new not in repr(client)
        finally:
            await client.aclose()

    api = serve(scenario)
    assert [key for _, key, _ in api.seen] == [old, old, new, new]


def test_settings_with_a_key_file_give_clients_a_followed_key(key_file: Path) -> None:
    key = key_file.read_text().strip()
    url = "http://127.0.0.1:9"
    chain = ChainSettings.model_validate(
        {"asset": "SATS", "api_url": url, "api_key_file": key_file}
    )
    lightning = LightningSettings.model_validate({"api_url": url, "api_key_file": key_file})
    pool = PoolSettings.model_validate(
        {
            "chain_api_url": url,
            "chain_api_key": "fixed-chain-key",
            "stats_api_url": url,
            "stats_api_key_file": key_file,
            "first_window_start": 0,
        }
    )
    followed = [client_key(chain), client_key(lightning), client_key(pool, "stats_api_key")]
    assert all(s.path == key_file and s.current() == key for s in followed)
    fixed = client_key(pool, "chain_api_key")
    assert fixed.path is None and fixed.current() == "fixed-chain-key"
    rotated = new_key()
    replace(key_file, rotated)
    assert [s.current() for s in followed] == [rotated] * 3
    assert fixed.current() == "fixed-chain-key"
