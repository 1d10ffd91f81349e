"""What a running exchange app holds: database, books, feed, owner operations, metrics.

Orders are placed with group commit: what queues up while a transaction runs goes into the
next one (``Exchange.place_orders``), and a caller is answered only after its batch committed.
Batches and cancels are serialized by one asyncio lock, held while they run in a worker thread
and while their market messages are published, so WebSocket messages leave in sequence order
and a snapshot is never taken from a book that is changing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from scnode_exchange.api.ratelimit import RateLimiter
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
from scnode_exchange.trading.service import (
    Exchange,
    OrderCommand,
    OrderNotFoundError,
    PlaceResult,
)

T = TypeVar("T")
FULL_DEPTH = 1_000_000
MAX_BATCH = 256  # orders per group-commit transaction


class TooManyOpenOrdersError(Exception):
    """The member already has the configured maximum of open orders."""


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
    read_engine: Engine | None = None
    readers: sessionmaker[Session] = field(init=False)  # read-only queries
    order_limiter: RateLimiter = field(init=False)
    feed: MarketFeed = field(default_factory=MarketFeed)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _pending: list[tuple[OrderCommand, asyncio.Future[PlaceResult]]] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.order_limiter = RateLimiter(
            self.settings.orders_per_second, self.settings.orders_burst
        )
        if self.read_engine is None or self.read_engine is self.engine:
            self.read_engine = self.engine
            self.readers = self.sessions
        else:
            self.readers = sessionmaker(self.read_engine)

    def dispose(self) -> None:
        """Close the database connections."""
        self.engine.dispose()
        if self.read_engine is not None and self.read_engine is not self.engine:
            self.read_engine.dispose()

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
        """Queue an order; answered once the batch holding it is committed and published."""
        future: asyncio.Future[PlaceResult] = asyncio.get_running_loop().create_future()
        self._pending.append(
            (OrderCommand(member_id, market, side, price, quantity, order_type, tif), future)
        )
        self._wake.set()
        return await future

    async def run_batches(self, stop: asyncio.Event) -> None:
        """Group commit: place what queued up meanwhile in one transaction, publish its market
        messages, then answer the callers. Runs until ``stop``; queued orders still go in."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while True:
                if not self._pending:
                    if stop.is_set():
                        return
                    self._wake.clear()
                    waking = asyncio.ensure_future(self._wake.wait())
                    await asyncio.wait({waking, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    waking.cancel()
                    continue
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                await self._place_batch(batch)
        finally:
            stopping.cancel()
            for _, future in self._pending:
                if not future.done():
                    future.set_exception(RuntimeError("the exchange is stopping"))

    async def _place_batch(
        self, batch: list[tuple[OrderCommand, asyncio.Future[PlaceResult]]]
    ) -> None:
        batch = await self._within_open_order_limit(batch)
        if not batch:
            return
        commands = [command for command, _ in batch]
        markets = {c.market for c in commands if c.market in self.exchange.markets}
        async with self.lock:
            before = {m: (self._depth_if_watched(m), self.last_seq(m)) for m in markets}
            try:
                results = await self.run(self.exchange.place_orders, commands)
            except Exception as exc:  # the whole batch failed: every caller hears why
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            traded: set[str] = set()
            for command, result in zip(commands, results, strict=True):
                if isinstance(result, PlaceResult):
                    self.metrics.orders.labels(command.market, result.status).inc()
                    fills = sum(isinstance(e, Fill) for e in result.events)
                    if fills:
                        self.metrics.fills.labels(command.market).inc(fills)
                        traded.add(command.market)
            for market in sorted(markets):
                await self._publish(market, *before[market], market in traded)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _within_open_order_limit(
        self, batch: list[tuple[OrderCommand, asyncio.Future[PlaceResult]]]
    ) -> list[tuple[OrderCommand, asyncio.Future[PlaceResult]]]:
        """Refuse orders beyond a member's open-order limit (one query per batch; every
        queued order counts as if it will rest)."""
        limit = self.settings.max_open_orders_per_member
        counts = await self.run(self._open_counts, {c.member_id for c, _ in batch})
        kept = []
        for command, future in batch:
            if counts.get(command.member_id, 0) >= limit:
                future.set_exception(TooManyOpenOrdersError(f"at most {limit} open orders"))
                continue
            counts[command.member_id] = counts.get(command.member_id, 0) + 1
            kept.append((command, future))
        return kept

    def _open_counts(self, member_ids: set[int]) -> dict[int, int]:
        query = (
            select(Order.member_id, func.count())
            .where(Order.member_id.in_(member_ids), Order.status == "open")
            .group_by(Order.member_id)
        )
        with self.readers() as session:
            return {member_id: int(count) for member_id, count in session.execute(query)}

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
        with self.readers() as session:
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
        with self.readers() as session:
            return trades_between(session, market, after, upto)

    def _candles(
        self, market: str, interval: str, first: float, seconds: int
    ) -> list[dict[str, int]]:
        with self.readers() as session:
            now = datetime.now(UTC).timestamp()
            span = int(now // seconds) - int(first // seconds) + 1
            return [c.to_json() for c in candles(session, market, interval, max(span, 1), now)]


def _reader_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # BEGIN is issued by the "begin" hook below
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _reader_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN DEFERRED")


def make_read_engine(url: str, write_engine: Engine) -> Engine:
    """The engine for read-only queries. On SQLite a read transaction that does not take the
    write lock (the write engine begins every transaction IMMEDIATE, which would queue every
    page view behind the order writer); WAL gives it a consistent snapshot. Elsewhere the
    write engine itself."""
    if write_engine.dialect.name != "sqlite":
        return write_engine
    engine = create_engine(url)
    event.listen(engine, "connect", _reader_connect)
    event.listen(engine, "begin", _reader_begin)
    return engine


def runtime(conn: HTTPConnection) -> Runtime:
    """Dependency: the app's runtime (present once the lifespan has started)."""
    found: Runtime | None = getattr(conn.app.state, "runtime", None)
    if found is None:
        raise RuntimeError("the exchange is not started (lifespan not run)")
    return found
