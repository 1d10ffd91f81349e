"""The exchange pages: ``/trade`` (order entry, open orders with cancel, depth, recent
trades, a live candlestick chart), ``/trade/history`` (personal and global trades) and
``/trade/ws``, the chart's WebSocket.

Orders go to the exchange's member API with the member's session token (the browser never
sees it), as plain CSRF-protected forms. Units are the exchange's: prices in SATS per lot,
quantities in lots (``GET /api/markets`` says what a lot is), integers only.

``/trade/ws`` relays the exchange's public ``/ws/candles`` and ``/ws/trades`` streams to a
signed-in member's browser: the dashboard's session cookie authenticates it and the
``Origin`` must be this dashboard's (a browser sends cookies with any site's WebSocket, so
that check is the WebSocket form of the CSRF rule). Each relayed message keeps the
exchange's shape plus ``channel`` (``candles`` or ``trades``); ``static/trade.js`` applies the
``seq``/``prev_seq`` rule and reconnects for a new snapshot when a message was missed. The
relay ends within ``SESSION_CHECK_SECONDS`` of the session ending (sign-out, revoked, expired).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
from fastapi import APIRouter, Form, Query, Request, WebSocket
from fastapi.responses import Response
from starlette.websockets import WebSocketDisconnect

from scnode_dashboard.app import MemberDep, MemberPostDep, PageError, expired
from scnode_dashboard.exchange import ExchangeError
from scnode_dashboard.pages import tools, unavailable
from scnode_dashboard.settings import DashboardSettings
from scnode_dashboard.store import FULL, Store

log = logging.getLogger(__name__)
INTERVALS = ("1m", "5m", "15m", "1h", "4h", "1d")
SIDES = ("buy", "sell")
TIME_IN_FORCE = ("gtc", "ioc", "post_only")
SESSION_CHECK_SECONDS = 30.0  # an open chart stops this long after its session ended
MarketQuery = Annotated[str | None, Query(max_length=32, pattern=r"^[A-Z0-9]+/[A-Z0-9]+$")]


def parse_count(text: str, what: str) -> int:
    """A positive whole number typed by a member (thousands separators allowed)."""
    cleaned = text.strip().replace(",", "").replace("_", "").replace(" ", "")
    if not cleaned.isdigit() or int(cleaned) <= 0:
        raise ValueError(f"The {what} must be a whole number above zero.")
    return int(cleaned)


def lot_text(lot_size: int, decimals: int) -> str:
    """One lot in the base asset (``1000000`` azsat → ``0.01``)."""
    value = Decimal(lot_size).scaleb(-decimals).normalize()
    return f"{value:f}"


def _exchange_ws_url(base: str, path: str, params: dict[str, Any]) -> str:
    parts = urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, urlencode(params), ""))


def build_router() -> APIRouter:
    """The exchange pages and the chart's WebSocket relay."""
    router = APIRouter()

    async def page(
        ctx: Any, request: Request, market: str | None, status: int = 200, **extra: Any
    ) -> Response:
        pages = tools(request)
        token = await pages.exchange_token(ctx)
        ex = pages.exchange
        settings: DashboardSettings = request.app.state.settings
        try:
            all_markets = await ex.get(token, "/api/markets")
            chosen = next((m for m in all_markets if m["symbol"] == market), None)
            if chosen is None:
                if market is not None:
                    raise PageError(404, f"No market {market} on this node.", "Not found")
                chosen = all_markets[0]
            symbol = chosen["symbol"]
            depth = await ex.get(token, "/api/depth", market=symbol, levels=12)
            recent = await ex.get(token, "/api/trades", market=symbol, limit=20)
            open_orders = await ex.get(token, "/api/orders/mine", status="open", limit=100)
            balances = await ex.get(token, "/api/balances")
            ticker = await ex.get(token, "/api/ticker", market=symbol)
        except ExchangeError as exc:
            raise PageError(503, unavailable(exc)) from exc
        decimals = settings.asset_decimals.get(chosen["base"], 0)
        return pages.render(
            ctx, "trade.html", status, market=chosen, markets=all_markets,
            lot=lot_text(chosen["lot_size"], decimals), depth=depth, recent=recent,
            open_orders=[o for o in open_orders["items"] if o["market"] == symbol],
            balances=balances, ticker=ticker, intervals=INTERVALS,
            form=extra.pop("form", {}), **extra,
        )  # fmt: skip

    @router.get("/trade")
    async def trade(
        ctx: MemberDep, request: Request, market: MarketQuery = None, placed: int | None = None,
        cancelled: int | None = None,
    ) -> Response:  # fmt: skip
        return await page(ctx, request, market, placed=placed, cancelled=cancelled)

    @router.post("/trade/orders")
    async def place(
        ctx: MemberPostDep,
        request: Request,
        market: Annotated[str, Form(max_length=32)],
        side: Annotated[str, Form(max_length=8)],
        price: Annotated[str, Form(max_length=32)],
        quantity: Annotated[str, Form(max_length=32)],
        time_in_force: Annotated[str, Form(max_length=16)] = "gtc",
    ) -> Response:
        """A limit order (sats per lot, lots), placed for the member; back to ``/trade``."""
        pages = tools(request)
        form = {"side": side, "price": price, "quantity": quantity, "tif": time_in_force}
        try:
            if side not in SIDES or time_in_force not in TIME_IN_FORCE:
                raise ValueError("Choose buy or sell and a time in force from the list.")
            body = {
                "market": market, "side": side, "type": "limit",
                "price": parse_count(price, "price"),
                "quantity": parse_count(quantity, "quantity"),
                "time_in_force": time_in_force,
            }  # fmt: skip
        except ValueError as exc:
            return await page(ctx, request, market, 422, error=str(exc), form=form)
        token = await pages.exchange_token(ctx)
        try:
            order = await pages.exchange.post(token, "/api/orders", body)
        except ExchangeError as exc:
            if exc.status == 0 or exc.status >= 500:
                raise PageError(503, unavailable(exc)) from exc
            return await page(ctx, request, market, 422, error=_refusal(exc), form=form)
        if order.get("status") == "rejected":
            reason = str(order.get("reject_reason") or "refused").replace("_", " ")
            return await page(
                ctx, request, market, 422, error=f"The exchange refused the order: {reason}.",
                form=form,
            )  # fmt: skip
        query = urlencode({"market": market, "placed": order["id"]})
        return pages.redirect(ctx, f"/trade?{query}")

    @router.post("/trade/orders/{order_id}/cancel")
    async def cancel(order_id: int, ctx: MemberPostDep, request: Request) -> Response:
        pages = tools(request)
        token = await pages.exchange_token(ctx)
        try:
            got = await pages.exchange.delete(token, f"/api/orders/{order_id}")
        except ExchangeError as exc:
            if exc.status == 404:
                raise PageError(404, "No such order.", "Not found") from exc
            if exc.status == 0 or exc.status >= 500:
                raise PageError(503, unavailable(exc)) from exc
            raise PageError(409, _refusal(exc), "Not cancelled") from exc
        query = urlencode({"market": got.get("market", ""), "cancelled": order_id})
        return pages.redirect(ctx, f"/trade?{query}")

    @router.get("/trade/history")
    async def history(
        ctx: MemberDep, request: Request, market: MarketQuery = None,
        before_id: Annotated[int | None, Query(ge=1)] = None,
    ) -> Response:  # fmt: skip
        pages = tools(request)
        token = await pages.exchange_token(ctx)
        ex = pages.exchange
        params: dict[str, Any] = {"limit": 50}
        if before_id is not None:
            params["before_id"] = before_id
        try:
            all_markets = await ex.get(token, "/api/markets")
            symbol = market or all_markets[0]["symbol"]
            mine = await ex.get(token, "/api/trades/mine", **params)
            public = await ex.get(token, "/api/trades", market=symbol, limit=50)
            orders = await ex.get(token, "/api/orders/mine", status="history", limit=50)
        except ExchangeError as exc:
            if exc.status == 404:
                raise PageError(404, f"No market {market} on this node.", "Not found") from exc
            raise PageError(503, unavailable(exc)) from exc
        return pages.render(
            ctx, "trade_history.html", market=symbol, mine=mine["items"],
            next_before_id=mine["next_before_id"], public=public, orders=orders["items"],
        )  # fmt: skip

    @router.websocket("/trade/ws")
    async def relay(ws: WebSocket, market: str = "", interval: str = "1m") -> None:
        settings: DashboardSettings = ws.app.state.settings
        if not _ws_member(ws) or ws.headers.get("origin") != settings.origin:
            await ws.close(code=1008, reason="sign in first")
            return
        if interval not in INTERVALS or not market or len(market) > 32:
            await ws.close(code=1008, reason="bad market or interval")
            return
        await ws.accept()
        base = settings.exchange_url
        streams = {
            "candles": _exchange_ws_url(
                base, "/ws/candles", {"market": market, "interval": interval, "limit": 300}
            ),
            "trades": _exchange_ws_url(base, "/ws/trades", {"market": market}),
        }
        async with aiohttp.ClientSession() as http:
            pumps = [asyncio.create_task(_pump(http, ws, ch, url)) for ch, url in streams.items()]
            pumps.append(asyncio.create_task(_until_closed(ws)))
            pumps.append(asyncio.create_task(_while_signed_in(ws)))
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in pumps:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await ws.close(code=1011)

    return router


def _refusal(exc: ExchangeError) -> str:
    detail = exc.detail
    if exc.status == 429:
        return "Too many orders at once: wait a moment."
    if exc.status == 403:
        return f"Not allowed: {detail}"
    return f"The exchange refused the order: {detail}"


def _ws_member(ws: WebSocket) -> bool:
    """A fully signed-in, unexpired dashboard session on this WebSocket handshake."""
    settings: DashboardSettings = ws.app.state.settings
    store: Store = ws.app.state.store
    session_id = ws.cookies.get(ws.app.state.cookie_name, "")
    session = store.session(session_id) if session_id else None
    return (
        session is not None
        and session.stage == FULL
        and session.user_id is not None
        and not expired(settings, session, time.time())
    )


async def _pump(http: aiohttp.ClientSession, ws: WebSocket, channel: str, url: str) -> None:
    """The exchange's stream ``url`` to the browser, tagged with ``channel``; returns when
    either side ends (the browser then reconnects for a fresh snapshot)."""
    async with http.ws_connect(url, heartbeat=30) as upstream:
        async for message in upstream:
            if message.type != aiohttp.WSMsgType.TEXT:
                return
            data = message.json()
            if isinstance(data, dict):
                await ws.send_json({"channel": channel, **data})


async def _while_signed_in(ws: WebSocket) -> None:
    """Returns once the session behind the socket ended (sign-out, revoked, timed out)."""
    while True:
        await asyncio.sleep(SESSION_CHECK_SECONDS)
        if not _ws_member(ws):
            return


async def _until_closed(ws: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass
