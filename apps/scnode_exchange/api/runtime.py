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
from sqlalchemy import Engine, create_engine, event
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
from scnode_exchange.matching import Done, Event, Fill, OrderType, Side, TimeInForce
from scnode_exchange.owner import OwnerOperations
from scnode_exchange.settings import ExchangeSettings
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
    # the resting orders (id → member, market) and open orders per member, kept from the
    # committed results so the open-order limit and cancel need no database read
    _resting: dict[int, tuple[int, str]] = field(default_factory=dict)
    _open_counts: dict[int, int] = field(default_factory=dict)
    _resting_synced: bool = False

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
        """Group commit: place what queued up meanwhile in one transaction, answer the callers
        once it committed, publish its market messages. Runs until ``stop``; queued orders
        still go in."""
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
        batch = self._within_open_order_limit(batch)
        if not batch:
            return
        commands = [command for command, _ in batch]
        markets = {c.market for c in commands if c.market in self.exchange.markets}
        async with self.lock:
            before = {m: (self._depth_if_watched(m), self.last_seq(m)) for m in markets}
            try:
                results = await self.run(self.exchange.place_orders, commands)
            except Exception as exc:  # the whole batch failed: every caller hears why
                self._resting_synced = False  # the books may have been rebuilt
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            traded: set[str] = set()
            for command, result in zip(commands, results, strict=True):
                if isinstance(result, PlaceResult):
                    self._track(command, result)
                    self.metrics.orders.labels(command.market, result.status).inc()
                    fills = sum(isinstance(e, Fill) for e in result.events)
                    if fills:
                        self.metrics.fills.labels(command.market).inc(fills)
                        traded.add(command.market)
                else:  # a failed single transaction rebuilt its book
                    self._resting_synced = False
            # committed: answer the callers now (their awaits resume while the trades of
            # the batch are read for the feed), then publish, still under the lock
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            for market in sorted(markets):
                await self._publish(market, *before[market], market in traded)

    def _sync_resting(self) -> None:
        """Rebuild the resting-order index from the books when it may be stale."""
        total = sum(len(book) for book in self.exchange.books.values())
        if self._resting_synced and total == len(self._resting):
            return
        self._resting.clear()
        self._open_counts.clear()
        for market, book in self.exchange.books.items():
            for order in book.open_orders():
                self._resting[order.order_id] = (order.member_id, market)
                self._open_counts[order.member_id] = self._open_counts.get(order.member_id, 0) + 1
        self._resting_synced = True

    def _forget(self, order_id: int) -> None:
        found = self._resting.pop(order_id, None)
        if found is not None:
            self._open_counts[found[0]] -= 1

    def _track(self, command: OrderCommand, result: PlaceResult) -> None:
        """Apply one committed placement to the resting-order index."""
        for happened in result.events:
            if isinstance(happened, Done):
                self._forget(happened.order_id)
        if result.status == "open" and result.order_id not in self._resting:
            self._resting[result.order_id] = (command.member_id, command.market)
            self._open_counts[command.member_id] = self._open_counts.get(command.member_id, 0) + 1

    def open_orders_of(self, member_id: int) -> int:
        """How many open orders the member has (from the books, no database read)."""
        self._sync_resting()
        return self._open_counts.get(member_id, 0)

    def _within_open_order_limit(
        self, batch: list[tuple[OrderCommand, asyncio.Future[PlaceResult]]]
    ) -> list[tuple[OrderCommand, asyncio.Future[PlaceResult]]]:
        """Refuse orders beyond a member's open-order limit (counted from the books; every
        queued order counts as if it will rest)."""
        limit = self.settings.max_open_orders_per_member
        self._sync_resting()
        counts: dict[int, int] = {}
        kept = []
        for command, future in batch:
            member = command.member_id
            count = counts.get(member, self._open_counts.get(member, 0))
            if count >= limit:
                if not future.done():
                    future.set_exception(TooManyOpenOrdersError(f"at most {limit} open orders"))
                continue
            counts[member] = count + 1
            kept.append((command, future))
        return kept

    async def cancel(self, member_id: int, order_id: int) -> str:
        """Cancel one of the member's open orders (others' ids look missing); its market."""
        market, _ = await self.cancel_events(member_id, order_id)
        return market

    async def cancel_events(self, member_id: int, order_id: int) -> tuple[str, list[Event]]:
        """Cancel one of the member's open orders: its market and the committed events
        (others' ids look missing: ``OrderNotFoundError``). The order is found in the books,
        the cancel itself re-checks ownership in its transaction."""
        async with self.lock:
            self._sync_resting()
            found = self._resting.get(order_id)
            if found is None or found[0] != member_id:
                raise OrderNotFoundError(f"no open order {order_id}")
            market = found[1]
            before_depth = self._depth_if_watched(market)
            before_seq = self.last_seq(market)
            try:
                events = await self.run(self.exchange.cancel_order, member_id, order_id)
            except BaseException:
                self._resting_synced = False
                raise
            self._forget(order_id)
            await self._publish(market, before_depth, before_seq, False)
            return market, events

    def _depth_if_watched(self, market: str) -> dict[str, list[list[int]]] | None:
        # the full depth is copied only when someone streams it
        if not self.feed.has_subscribers("orders", market):
            return None
        return depth(self.exchange.books[market], FULL_DEPTH)

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


async def runtime_dep(conn: HTTPConnection) -> Runtime:
    """Async dependency: the app's runtime, without a thread-pool hop (FastAPI runs a plain
    ``def`` dependency in a worker thread)."""
    return runtime(conn)


def runtime(conn: HTTPConnection) -> Runtime:
    """Dependency: the app's runtime (present once the lifespan has started)."""
    found: Runtime | None = getattr(conn.app.state, "runtime", None)
    if found is None:
        raise RuntimeError("the exchange is not started (lifespan not run)")
    return found
