"""Group commit: many concurrent callers, one database transaction per batch of orders.

``OrderQueue.place()`` (async, called by each API request) queues an order and waits;
``OrderQueue.run()`` (the exchange service's background task) takes everything queued so far,
places it with ``Exchange.place_orders`` in ONE transaction in a worker thread, and only after
the commit resolves each caller with its own ``PlaceResult`` (or its own exception). So every
acknowledged order is committed, and a commit (an fsync on PostgreSQL, the WAL append on
SQLite) is shared by all orders that arrived while the previous batch was being written.

There is no timer: an order that arrives at an idle queue goes out at once (a batch of one);
batches grow only when orders arrive faster than transactions commit, which is exactly when
sharing a commit pays. Orders are placed in arrival order. A batch whose transaction fails is
retried one order per transaction (``Exchange.place_orders``), so one bad order fails alone.

A caller that stops waiting (cancelled task, closed HTTP request) does not withdraw its order:
once queued it is placed like an order whose response was lost on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from scnode_exchange.matching import Event, OrderType, Side, TimeInForce
from scnode_exchange.trading.service import Exchange, OrderCommand, PlaceResult


class QueueClosedError(RuntimeError):
    """The queue's worker is not running (stopped, or never started)."""


class OrderQueue:
    """The asynchronous front of an ``Exchange`` with group commit (see the module doc)."""

    def __init__(self, exchange: Exchange, max_batch: int = 512) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.exchange = exchange
        self.max_batch = max_batch
        self._pending: list[tuple[OrderCommand, asyncio.Future[PlaceResult]]] = []
        self._wake = asyncio.Event()
        self._running = False
        self._inflight: asyncio.Future[list[PlaceResult | Exception]] | None = None
        # figures for benchmarks and the status page: batches written, orders in them
        self.batches = 0
        self.orders = 0

    async def place(
        self,
        member_id: int,
        market: str,
        side: Side,
        price: int,
        quantity: int,
        order_type: OrderType = OrderType.LIMIT,
        tif: TimeInForce = TimeInForce.GTC,
    ) -> PlaceResult:
        """``Exchange.place_order``, answered after the batch holding it has committed."""
        return await self.submit(
            OrderCommand(member_id, market, side, price, quantity, order_type, tif)
        )

    async def submit(self, command: OrderCommand) -> PlaceResult:
        """Queue ``command`` and wait for its committed result."""
        if not self._running:
            raise QueueClosedError("the order queue is not running")
        future: asyncio.Future[PlaceResult] = asyncio.get_running_loop().create_future()
        self._pending.append((command, future))
        self._wake.set()
        return await future

    async def cancel(self, member_id: int, order_id: int) -> list[Event]:
        """``Exchange.cancel_order`` in a worker thread (serialized with the batches)."""
        return await asyncio.to_thread(self.exchange.cancel_order, member_id, order_id)

    async def run(self, stop: asyncio.Event) -> None:
        """Write batches until ``stop`` is set; orders queued before that are still placed."""
        self._running = True
        stopping = asyncio.create_task(stop.wait())
        try:
            while True:
                if not self._pending:
                    if stop.is_set():
                        return
                    self._wake.clear()
                    waking = asyncio.create_task(self._wake.wait())
                    await asyncio.wait({waking, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    waking.cancel()
                    continue
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                await self._write(batch)
        finally:
            self._running = False
            stopping.cancel()
            for _, future in self._pending:
                if not future.done():
                    future.set_exception(QueueClosedError("the order queue stopped"))
            self._pending.clear()

    async def _write(
        self, batch: Sequence[tuple[OrderCommand, asyncio.Future[PlaceResult]]]
    ) -> None:
        commands = [command for command, _ in batch]
        work: asyncio.Future[list[PlaceResult | Exception]]
        work = self._inflight = asyncio.create_task(
            asyncio.to_thread(self.exchange.place_orders, commands)
        )
        cancelled = False
        while True:
            try:
                # a cancelled worker still waits for the transaction in flight and answers
                # its callers: a committed order is never reported as failed
                results = await asyncio.shield(work)
                break
            except asyncio.CancelledError:
                if work.done():
                    raise
                cancelled = True
            except Exception as exc:  # place_orders answers per order; this is the worker
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                raise
        self.batches += 1
        self.orders += len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # the caller stopped waiting; the order stands
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
        if cancelled:
            raise asyncio.CancelledError
