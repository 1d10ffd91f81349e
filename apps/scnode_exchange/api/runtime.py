"""What a running exchange app holds: database, books, feed, owner operations, metrics.

Order commands are serialized by one asyncio lock that is held while the command runs in a
worker thread and while its market messages are published, so WebSocket messages leave in
sequence order and a snapshot is never taken from a book a command is changing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from scnode_exchange.marketdata import (
    INTERVALS,
    MarketFeed,
    candles,
    depth,
    depth_changes,
    trades_between,
)
from scnode_exchange.matching import Fill, OrderType, Side, TimeInForce
from scnode_exchange.owner import OwnerOperations
from scnode_exchange.settings import ExchangeSettings
from scnode_exchange.trading.models import Order
from scnode_exchange.trading.service import Exchange, OrderNotFoundError, PlaceResult

T = TypeVar("T")
FULL_DEPTH = 1_000_000


class ExchangeMetrics:
    """Prometheus metrics of the exchange (own registry, so tests can build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "scnode_exchange_request_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.orders = Counter(
            "scnode_exchange_orders_total",
            "orders placed, by final status",
            ["market", "status"],
            registry=self.registry,
        )
        self.fills = Counter(
            "scnode_exchange_fills_total", "fills", ["market"], registry=self.registry
        )
        self.subscribers = Gauge(
            "scnode_exchange_ws_subscribers", "WebSocket subscriptions", registry=self.registry
        )


@dataclass
class Runtime:
    """The live state of one app instance (built in the lifespan)."""

    settings: ExchangeSettings
    engine: Engine
    sessions: sessionmaker[Session]
    exchange: Exchange
    owner: OwnerOperations
    metrics: ExchangeMetrics
    feed: MarketFeed = field(default_factory=MarketFeed)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking (database) work off the event loop."""
        return await run_in_threadpool(fn, *args)

    def last_seq(self, market: str) -> int:
        """The market's last event sequence number."""
        return self.exchange.books[market].next_seq - 1

    async def place(
        self,
        member_id: int,
        market: str,
        side: Side,
        price: int,
        quantity: int,
        order_type: OrderType,
        tif: TimeInForce,
    ) -> PlaceResult:
        """Place an order and publish what it changed."""
        async with self.lock:
            before_depth = self._depth_if_watched(market)
            before_seq = self.last_seq(market)
            result = await self.run(
                self.exchange.place_order,
                member_id,
                market,
                side,
                price,
                quantity,
                order_type,
                tif,
            )
            self.metrics.orders.labels(market, result.status).inc()
            fills = sum(isinstance(e, Fill) for e in result.events)
            if fills:
                self.metrics.fills.labels(market).inc(fills)
            await self._publish(market, before_depth, before_seq, bool(fills))
            return result

    async def cancel(self, member_id: int, order_id: int) -> str:
        """Cancel one of the member's open orders (others' ids look missing); its market."""
        async with self.lock:
            market = await self.run(self._open_order_market, member_id, order_id)
            before_depth = self._depth_if_watched(market)
            before_seq = self.last_seq(market)
            await self.run(self.exchange.cancel_order, member_id, order_id)
            await self._publish(market, before_depth, before_seq, False)
            return market

    def _depth_if_watched(self, market: str) -> dict[str, list[list[int]]] | None:
        # the full depth is copied only when someone streams it
        if not self.feed.has_subscribers("orders", market):
            return None
        return depth(self.exchange.books[market], FULL_DEPTH)

    def _open_order_market(self, member_id: int, order_id: int) -> str:
        with self.sessions() as session:
            market = session.scalar(
                select(Order.market).where(
                    Order.id == order_id, Order.member_id == member_id, Order.status == "open"
                )
            )
        if market is None:
            raise OrderNotFoundError(f"no open order {order_id}")
        return market

    async def _publish(
        self,
        market: str,
        before_depth: dict[str, list[list[int]]] | None,
        before_seq: int,
        fills: bool,
    ) -> None:
        seq = self.last_seq(market)
        if seq == before_seq:
            return
        feed = self.feed
        if before_depth is not None and feed.has_subscribers("orders", market):
            changes = depth_changes(before_depth, depth(self.exchange.books[market], FULL_DEPTH))
            if changes["bids"] or changes["asks"]:
                feed.publish("orders", market, seq, {"type": "update", "market": market, **changes})
        if not fills:
            return
        trades = await self.run(self._trades, market, before_seq, seq)
        if feed.has_subscribers("trades", market):
            feed.publish(
                "trades", market, seq, {"type": "update", "market": market, "trades": trades}
            )
        first = min(t["time"] for t in trades)
        for interval, seconds in INTERVALS.items():
            channel = f"candles:{interval}"
            if not feed.has_subscribers(channel, market):
                continue
            touched = await self.run(self._candles, market, interval, first, seconds)
            feed.publish(
                channel,
                market,
                seq,
                {"type": "update", "market": market, "interval": interval, "candles": touched},
            )

    def _trades(self, market: str, after: int, upto: int) -> list[dict[str, Any]]:
        with self.sessions() as session:
            return trades_between(session, market, after, upto)

    def _candles(
        self, market: str, interval: str, first: float, seconds: int
    ) -> list[dict[str, int]]:
        with self.sessions() as session:
            now = datetime.now(UTC).timestamp()
            span = int(now // seconds) - int(first // seconds) + 1
            return [c.to_json() for c in candles(session, market, interval, max(span, 1), now)]


def runtime(conn: HTTPConnection) -> Runtime:
    """Dependency: the app's runtime (present once the lifespan has started)."""
    found: Runtime | None = getattr(conn.app.state, "runtime", None)
    if found is None:
        raise RuntimeError("the exchange is not started (lifespan not run)")
    return found
