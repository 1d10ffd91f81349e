"""The simulation control API (loopback HTTP, `simnet-control=127.0.0.1:PORT`).

Documented in simnet/README-lightning.md. Test equipment only: no authentication, binds only
to loopback addresses.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from aiohttp import web

from simnet.lightning.node import Node, RpcError, msat_param


def make_app(node: Node) -> web.Application:
    """Routes of the control API."""

    async def body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        data = await request.json()
        return data if isinstance(data, dict) else {}

    def ok(data: Any) -> web.Response:
        return web.json_response(data)

    def error(exc: RpcError) -> web.Response:
        return web.json_response({"error": exc.to_json()}, status=400)

    async def status(request: web.Request) -> web.Response:
        return ok(
            {
                "id": node.node_id,
                "role": node.role,
                "blockheight": node.blockheight,
                "lag_blocks": node.lag_blocks,
                "hold_height": node.hold_height,
                "chain_trouble": node.chain_trouble,
                "peers": sorted(node.peers),
                "outside_id": node.outside.node_id if node.outside else None,
                "simulation": True,
            }
        )

    async def lag(request: web.Request) -> web.Response:
        data = await body(request)
        node.lag_blocks = int(data.get("blocks", 0))
        return ok({"lag_blocks": node.lag_blocks})

    async def hold(request: web.Request) -> web.Response:
        data = await body(request)
        node.hold_height = int(data.get("height", node.blockheight))
        return ok({"hold_height": node.hold_height})

    async def resume(request: web.Request) -> web.Response:
        node.lag_blocks = 0
        node.hold_height = None
        return ok({"lag_blocks": 0, "hold_height": None})

    async def fail_next(request: web.Request) -> web.Response:
        data = await body(request)
        node.fail_next = data if data.get("code") else None
        return ok({"fail_next": node.fail_next})

    async def fail_next_htlc(request: web.Request) -> web.Response:
        data = await body(request)
        node.fail_next_htlc = int(data["failcode"]) if data.get("failcode") else None
        return ok({"fail_next_htlc": node.fail_next_htlc})

    async def shift(request: web.Request) -> web.Response:
        data = await body(request)
        peer = data.get("peer_id") or next(iter(sorted(node.peers)), "")
        try:
            return ok(
                await node.shift_balance(str(peer), msat_param(data["amount_msat"], "amount_msat"))
            )
        except RpcError as exc:
            return error(exc)

    async def warning(request: web.Request) -> web.Response:
        data = await body(request)
        node.log(
            "UNUSUAL",
            str(data.get("source", "lightningd")),
            str(data.get("message", "simulated warning")),
        )
        return ok({"ok": True})

    async def outside_invoice(request: web.Request) -> web.Response:
        if node.outside is None:
            return error(RpcError(-1, "not a hub (simnet-role=hub)"))
        data = await body(request)
        amount = data.get("amount_msat")
        record = node.outside.make_invoice(
            None if amount in (None, "any") else msat_param(amount, "amount_msat"),
            str(data.get("description", "outside world")),
            int(data.get("expiry", 3600)),
        )
        return ok(record)

    async def outside_invoices(request: web.Request) -> web.Response:
        if node.outside is None:
            return error(RpcError(-1, "not a hub (simnet-role=hub)"))
        return ok({"invoices": list(node.outside.invoices.values())})

    async def outside_pay(request: web.Request) -> web.Response:
        if node.outside is None:
            return error(RpcError(-1, "not a hub (simnet-role=hub)"))
        data = await body(request)
        amount = data.get("amount_msat")
        try:
            return ok(
                await node.outside.pay(
                    str(data["bolt11"]),
                    None if amount is None else msat_param(amount, "amount_msat"),
                )
            )
        except RpcError as exc:
            return error(exc)

    app = web.Application()
    app.router.add_get("/v1/status", status)
    app.router.add_post("/v1/chain/lag", lag)
    app.router.add_post("/v1/chain/hold", hold)
    app.router.add_post("/v1/chain/resume", resume)
    app.router.add_post("/v1/payments/fail-next", fail_next)
    app.router.add_post("/v1/htlcs/fail-next", fail_next_htlc)
    app.router.add_post("/v1/channel/shift", shift)
    app.router.add_post("/v1/warning", warning)
    app.router.add_post("/v1/outside/invoice", outside_invoice)
    app.router.add_get("/v1/outside/invoices", outside_invoices)
    app.router.add_post("/v1/outside/pay", outside_pay)
    return app


async def start(node: Node, address: str) -> web.AppRunner:
    """Serve the control API on a loopback host:port."""
    host, _, port = address.rpartition(":")
    if not ipaddress.ip_address(host or "127.0.0.1").is_loopback:
        raise SystemExit(f"simnet-control must be a loopback address, not {host}")
    runner = web.AppRunner(make_app(node), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host or "127.0.0.1", int(port)).start()
    return runner
