"""With Lightning deposits on, the channel's local side counts as SATS holdings: a member
credited through an invoice is covered by the channel, not reported as a shortfall."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from scnode_exchange.lightning.client import LightningApiClient

KEY = "scnk_00000000_" + "c" * 43


async def _serve(status: dict[str, Any]) -> tuple[web.AppRunner, str, list[str]]:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(
            request.headers.get("X-API-Key", "") or request.headers.get("Authorization", "")
        )
        return web.json_response(status)

    app = web.Application()
    app.router.add_get("/v1/status", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}", seen


def _balance(status: dict[str, Any]) -> tuple[dict[str, int], list[str]]:
    async def main() -> tuple[dict[str, int], list[str]]:
        runner, url, seen = await _serve(status)
        client = LightningApiClient(url, KEY)
        try:
            return await client.balance(), seen
        finally:
            await client.aclose()
            await runner.cleanup()

    return asyncio.run(main())


def test_the_channel_local_side_is_the_lightning_holding_in_whole_sats() -> None:
    balance, seen = _balance({"channel": {"local_msat": 123_456_789, "total_msat": 10**9}})
    assert balance == {"trusted_sats": 123_456}
    assert seen and KEY in seen[0]


def test_no_channel_holds_nothing() -> None:
    assert _balance({"channel": None})[0] == {"trusted_sats": 0}
