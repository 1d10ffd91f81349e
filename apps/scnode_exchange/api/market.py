"""Public market data: REST (depth, trades, candles, ticker) and WebSocket streams.

Streams: ``/ws/orders`` (depth), ``/ws/trades``, ``/ws/candles?interval=``, and
``/ws/market_stats`` (the 24 h ticker every few seconds). Each stream first sends a
``snapshot`` with the market's ``seq``, then ``update`` messages; see ``marketdata.feed`` for
how a client detects a gap (``prev_seq``) and resyncs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, WebSocket, status
from starlette.websockets import WebSocketDisconnect, WebSocketState

from scnode_exchange.api.runtime import Runtime, runtime, runtime_dep
from scnode_exchange.marketdata import INTERVALS, candles, depth, recent_trades, ticker

RuntimeDep = Annotated[Runtime, Depends(runtime_dep)]
MarketQuery = Annotated[str | None, Query(max_length=32)]


def _market(rt: Runtime, market: str | None) -> str:
    symbol = market or rt.settings.markets[0].symbol
    if symbol not in rt.exchange.markets:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no market {symbol}")
    return symbol


def _interval(interval: str) -> str:
    if interval not in INTERVALS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"interval must be one of {', '.join(INTERVALS)}",
        )
    return interval


def _ticker(rt: Runtime, market: str) -> dict[str, Any]:
    with rt.readers() as session:
        out = ticker(session, market)
    book = rt.exchange.books[market]
    out["best_bid"], out["best_ask"] = book.best_bid(), book.best_ask()
    return out


def _recent(rt: Runtime, market: str, limit: int) -> list[dict[str, Any]]:
    with rt.readers() as session:
        return recent_trades(session, market, limit)


def _candles(rt: Runtime, market: str, interval: str, limit: int) -> list[dict[str, int]]:
    with rt.readers() as session:
        return [c.to_json() for c in candles(session, market, interval, limit)]


def build_router() -> APIRouter:
    """Market data routes: ``/api/markets…``, upstream's ``/api/orders`` (book),
    ``/api/orders/{bid,ask}``, ``/api/trades``, ``/api/candles``, and the ``/ws/*`` streams."""
    router = APIRouter(tags=["market"])

    @router.get("/api/markets")
    async def markets(rt: RuntimeDep) -> list[dict[str, Any]]:
        return [
            {
                "symbol": m.symbol,
                "base": m.base,
                "quote": m.quote,
                "lot_size": m.lot_size,
                "tick": m.tick,
                "maker_fee_bps": m.maker_fee_bps,
                "taker_fee_bps": m.taker_fee_bps,
                "max_quantity": m.max_quantity,
                "max_price": m.max_price,
            }
            for m in rt.settings.markets
        ]

    async def book_depth(rt: Runtime, market: str | None, levels: int) -> dict[str, Any]:
        symbol = _market(rt, market)
        async with rt.lock:
            return {
                "market": symbol,
                "seq": rt.last_seq(symbol),
                **depth(rt.exchange.books[symbol], levels),
            }

    @router.get("/api/depth")
    async def depth_route(
        rt: RuntimeDep,
        market: MarketQuery = None,
        levels: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        return await book_depth(rt, market, levels)

    @router.get("/api/orders")
    async def order_book(
        rt: RuntimeDep,
        market: MarketQuery = None,
        levels: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        return await book_depth(rt, market, levels)

    @router.get("/api/orders/bid")
    async def bids(rt: RuntimeDep, market: MarketQuery = None) -> list[list[int]]:
        book: list[list[int]] = (await book_depth(rt, market, 500))["bids"]
        return book

    @router.get("/api/orders/ask")
    async def asks(rt: RuntimeDep, market: MarketQuery = None) -> list[list[int]]:
        book: list[list[int]] = (await book_depth(rt, market, 500))["asks"]
        return book

    @router.get("/api/trades")
    async def trades(
        rt: RuntimeDep,
        market: MarketQuery = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[dict[str, Any]]:
        return await rt.run(_recent, rt, _market(rt, market), limit)

    @router.get("/api/candles")
    async def candle_route(
        rt: RuntimeDep,
        market: MarketQuery = None,
        interval: str = "1m",
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[dict[str, int]]:
        return await rt.run(_candles, rt, _market(rt, market), _interval(interval), limit)

    @router.get("/api/ticker")
    async def ticker_route(rt: RuntimeDep, market: MarketQuery = None) -> dict[str, Any]:
        return await rt.run(_ticker, rt, _market(rt, market))

    # --- streams --------------------------------------------------------------------------

    async def stream(
        ws: WebSocket,
        channel: str,
        market: str | None,
        snapshot: Callable[[Runtime, str], Awaitable[dict[str, Any]]],
    ) -> None:
        rt = runtime(ws)
        symbol = market or rt.settings.markets[0].symbol
        if symbol not in rt.exchange.markets:
            await ws.close(code=1008, reason=f"no market {symbol}")
            return
        await ws.accept()
        sub = rt.feed.subscribe(channel, symbol)
        rt.metrics.subscribers.set(rt.feed.subscriber_count())
        # the client never needs to send; reading tells us when it has gone
        closed = asyncio.ensure_future(_until_closed(ws))
        try:
            await ws.send_json({"type": "snapshot", "market": symbol, **await snapshot(rt, symbol)})
            while True:
                getter = asyncio.ensure_future(sub.queue.get())
                done, _ = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    return
                message = getter.result()
                await ws.send_json(message)
                if message.get("type") == "resync":
                    await ws.close(code=1013, reason="fell behind: reconnect for a snapshot")
                    return
        except (WebSocketDisconnect, RuntimeError):
            return
        finally:
            closed.cancel()
            rt.feed.unsubscribe(sub)
            rt.metrics.subscribers.set(rt.feed.subscriber_count())
            gone = ws.client_state != WebSocketState.CONNECTED
            if ws.application_state == WebSocketState.CONNECTED and not gone:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await ws.close()

    async def depth_snapshot(rt: Runtime, symbol: str) -> dict[str, Any]:
        async with rt.lock:
            return {"seq": rt.last_seq(symbol), **depth(rt.exchange.books[symbol], 500)}

    async def trades_snapshot(rt: Runtime, symbol: str) -> dict[str, Any]:
        async with rt.lock:
            return {"seq": rt.last_seq(symbol), "trades": await rt.run(_recent, rt, symbol, 50)}

    @router.websocket("/ws/orders")
    async def ws_orders(ws: WebSocket, market: str | None = None) -> None:
        await stream(ws, "orders", market, depth_snapshot)

    @router.websocket("/ws/trades")
    async def ws_trades(ws: WebSocket, market: str | None = None) -> None:
        await stream(ws, "trades", market, trades_snapshot)

    @router.websocket("/ws/candles")
    async def ws_candles(
        ws: WebSocket, market: str | None = None, interval: str = "1m", limit: int = 200
    ) -> None:
        if interval not in INTERVALS:
            await ws.close(code=1008, reason=f"interval must be one of {', '.join(INTERVALS)}")
            return
        count = max(1, min(limit, 1000))

        async def snapshot(rt: Runtime, symbol: str) -> dict[str, Any]:
            async with rt.lock:
                return {
                    "seq": rt.last_seq(symbol),
                    "interval": interval,
                    "candles": await rt.run(_candles, rt, symbol, interval, count),
                }

        await stream(ws, f"candles:{interval}", market, snapshot)

    @router.websocket("/ws/market_stats")
    async def ws_stats(ws: WebSocket, market: str | None = None) -> None:
        async def snapshot(rt: Runtime, symbol: str) -> dict[str, Any]:
            async with rt.lock:
                return {"seq": rt.last_seq(symbol), **await rt.run(_ticker, rt, symbol)}

        await stream(ws, "stats", market, snapshot)

    return router


async def _until_closed(ws: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return


async def publish_stats(rt: Runtime, stop: asyncio.Event) -> None:
    """Every ``market_stats_interval_seconds``: the ticker to ``/ws/market_stats`` listeners
    (full state each time, as upstream's frontend expects every 2 s)."""
    while not stop.is_set():
        for symbol in rt.exchange.markets:
            if rt.feed.has_subscribers("stats", symbol):
                async with rt.lock:
                    seq = rt.last_seq(symbol)
                    stats = await rt.run(_ticker, rt, symbol)
                rt.feed.publish("stats", symbol, seq, {"type": "stats", "market": symbol, **stats})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rt.settings.market_stats_interval_seconds)
