"""The worker's chain adapter on the real chain API client, against a tiny HTTP server:
which answers refund a withdrawal (definitive refusals) and which keep it sending."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiohttp import web

from scnode_exchange.chainclient import ChainApiClient
from scnode_exchange.withdrawals.chain import ChainApiSender
from scnode_exchange.withdrawals.worker import ChainUnavailableError, SendRefusedError

TXID = "ab" * 32


async def _with_server(status: int, body: dict[str, Any], call: str) -> Any:
    seen: list[dict[str, Any]] = []

    async def send(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response(body, status=status)

    async def transaction(request: web.Request) -> web.Response:
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_post("/v1/send", send)
    app.router.add_get("/v1/transactions/{txid}", transaction)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    sender = ChainApiSender(ChainApiClient(f"http://127.0.0.1:{port}", "k" * 32, timeout=5))
    try:
        if call == "send":
            result: Any = await sender.send("bcrt1qxyz", 5_000, "wd-000001", 3)
            assert seen[0]["idempotency_key"] == "wd-000001"
            assert (seen[0]["amount_sats"], seen[0]["fee_rate_sat_vb"]) == (5_000, 3)
            return result
        return await sender.confirmations(TXID)
    finally:
        await sender.aclose()
        await runner.cleanup()


def test_a_send_answer_gives_the_txid() -> None:
    body = {"txid": TXID, "idempotency_key": "wd-000001", "replayed": False}
    assert asyncio.run(_with_server(201, body, "send")) == TXID
    assert asyncio.run(_with_server(200, {**body, "replayed": True}, "send")) == TXID


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (409, "insufficient funds in the node wallet"),
        (409, "idempotency_key was already used for a different send"),
        (422, "invalid address: Invalid address"),
    ],
)
def test_definitive_refusals(status: int, detail: str) -> None:
    with pytest.raises(SendRefusedError, match=detail.split(":")[0]):
        asyncio.run(_with_server(status, {"detail": detail}, "send"))


@pytest.mark.parametrize("status", [401, 403, 404, 500, 502, 503])
def test_outages_and_misconfiguration_are_retried_not_refunded(status: int) -> None:
    with pytest.raises(ChainUnavailableError):
        asyncio.run(_with_server(status, {"detail": "bitcoin daemon unavailable"}, "send"))


def test_confirmations_and_the_network_fee() -> None:
    body = {"txid": TXID, "confirmations": 4, "fee_sats": 141}
    assert asyncio.run(_with_server(200, body, "confirmations")) == (4, 141)
    assert asyncio.run(_with_server(200, {"txid": TXID, "confirmations": 0}, "confirmations")) == (
        0,
        None,
    )
    with pytest.raises(ChainUnavailableError):
        asyncio.run(_with_server(404, {"detail": "transaction not in this node's wallet"},
                                 "confirmations"))  # fmt: skip


def test_an_unreachable_api_is_retried() -> None:
    async def scenario() -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        sender = ChainApiSender(ChainApiClient(f"http://127.0.0.1:{port}", "k" * 32, timeout=2))
        try:
            with pytest.raises(ChainUnavailableError):
                await sender.send("bcrt1qxyz", 5_000, "wd-000001", None)
        finally:
            await sender.aclose()

    asyncio.run(scenario())
