"""Group commit: a batch of orders in one transaction, and the async queue that feeds it."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.ledger import AZC, NODE_WALLET, SATS, Ledger, UnknownAccountError, verify
from scnode_exchange.matching import (
    MarketSpec,
    OrderBook,
    OrderRequest,
    RejectReason,
    Side,
    TimeInForce,
)
from scnode_exchange.trading.group import OrderQueue, QueueClosedError
from scnode_exchange.trading.models import MarketState, Order
from scnode_exchange.trading.service import (
    FILLED,
    OPEN,
    REJECTED,
    Exchange,
    OrderCommand,
    PlaceResult,
    verify_orders,
)

AZC_SATS = MarketSpec("AZC/SATS", AZC, SATS, lot_size=1_000_000, tick=10,
                      maker_fee_bps=10, taker_fee_bps=20)  # fmt: skip
MICRO_SATS = MarketSpec("MICRO/SATS", "MICRO", SATS, lot_size=100, tick=1)
MARKETS = (AZC_SATS, MICRO_SATS)
BUY, SELL = Side.BUY, Side.SELL
Sessions = sessionmaker[Session]


def fund(sessions: Sessions, handle: str, **amounts: int) -> int:
    with sessions.begin() as s:
        ledger = Ledger(s)
        member = ledger.create_member(handle)
        for asset, amount in amounts.items():
            ledger.transfer(
                "deposit", "test deposit", ledger.system_account(NODE_WALLET, asset),
                ledger.member_account(member.id, asset), amount,
            )  # fmt: skip
        return member.id


def audit(sessions: Sessions, exchange: Exchange) -> None:
    with sessions.begin() as s:
        problems = verify(s).problems + verify_orders(s, MARKETS)
    assert problems == []
    for symbol, book in exchange.books.items():
        assert exchange.load_book(symbol).snapshot() == book.snapshot()


def stored_status(sessions: Sessions) -> dict[int, str]:
    with sessions.begin() as s:
        return {order_id: status for order_id, status in s.execute(select(Order.id, Order.status))}


def assert_stored_as_answered(
    sessions: Sessions, exchange: Exchange, results: list[PlaceResult]
) -> None:
    """Every answered order is stored (and nothing else); what is open is what is on the book;
    orders answered as finished stayed finished."""
    stored = stored_status(sessions)
    assert stored.keys() == {r.order_id for r in results}
    on_book = {o.order_id for book in exchange.books.values() for o in book.open_orders()}
    assert {i for i, status in stored.items() if status == OPEN} == on_book
    for r in results:
        if r.status != OPEN:
            assert stored[r.order_id] == r.status


def random_commands(rng: random.Random, members: list[int], count: int) -> list[OrderCommand]:
    return [
        OrderCommand(
            rng.choice(members),
            "AZC/SATS",
            rng.choice([BUY, SELL]),
            (100 + rng.randint(-3, 3)) * 10,
            rng.randint(1, 9),
            tif=rng.choice([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC]),
        )
        for _ in range(count)
    ]


def test_a_batch_is_matched_in_order_exactly_as_one_order_after_another(
    sessions: Sessions,
) -> None:
    """With ample funds, a batch's events are those of the pure engine fed the same orders in
    the same order; every order is stored as reported; ledger and book stay exact."""
    members = [fund(sessions, f"m{i}", SATS=10**9, AZC=10**12) for i in range(4)]
    exchange = Exchange(sessions, MARKETS)
    commands = random_commands(random.Random(3), members, 120)
    results = exchange.place_orders(commands)
    assert all(isinstance(r, PlaceResult) for r in results)
    placed = [r for r in results if isinstance(r, PlaceResult)]

    engine = OrderBook(AZC_SATS)
    for command, result in zip(commands, placed, strict=True):
        expected = engine.place(
            OrderRequest(
                result.order_id,
                command.member_id,
                command.side,
                command.price,
                command.quantity,
                command.order_type,
                command.tif,
            )
        )
        assert result.events == expected
    assert exchange.books["AZC/SATS"].snapshot() == engine.snapshot()
    assert sum(type(e).__name__ == "Fill" for r in placed for e in r.events) > 10
    assert_stored_as_answered(sessions, exchange, placed)
    audit(sessions, exchange)


def test_funds_used_earlier_in_the_batch_are_not_available_later(sessions: Sessions) -> None:
    alice = fund(sessions, "alice", SATS=10_000)
    exchange = Exchange(sessions, MARKETS)
    first, second = exchange.place_orders(
        [
            OrderCommand(alice, "AZC/SATS", BUY, 1_000, 10),
            OrderCommand(alice, "AZC/SATS", BUY, 10, 1),
        ]
    )
    assert isinstance(first, PlaceResult) and first.status == OPEN
    assert isinstance(second, PlaceResult) and second.status == REJECTED
    assert second.reject_reason == RejectReason.INSUFFICIENT_FUNDS
    audit(sessions, exchange)


def test_a_bad_order_fails_alone_and_the_rest_of_the_batch_is_committed(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused argument, an unknown member and a crash in the middle of one order's fill
    each fail only that order; the others are placed as if they had come alone."""
    alice = fund(sessions, "alice", SATS=1_000_000)
    bob = fund(sessions, "bob", AZC=100_000_000)
    exchange = Exchange(sessions, MARKETS)
    original = Exchange._post_fill
    crash_price = 1_010

    def post_fill(self: Exchange, writer: object, spec: object, fill: object, *a: object) -> None:
        if getattr(fill, "price", None) == crash_price:
            raise RuntimeError("disk full while posting this fill")
        original(self, writer, spec, fill, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(Exchange, "_post_fill", post_fill)
    results = exchange.place_orders(
        [
            OrderCommand(bob, "AZC/SATS", SELL, 1_000, 5),
            OrderCommand(alice, "AZC/SATS", BUY, 1_000, 2),  # fills 2 of bob's 5
            OrderCommand(alice, "AZC/SATS", BUY, 10.5, 1),  # type: ignore[arg-type]
            OrderCommand(999_999, "AZC/SATS", BUY, 1_000, 1),
            OrderCommand(bob, "AZC/SATS", SELL, crash_price, 1),
            OrderCommand(alice, "AZC/SATS", BUY, crash_price, 4),  # its 4th lot's fill crashes
            OrderCommand(alice, "AZC/SATS", BUY, 990, 1),
        ]
    )
    monkeypatch.undo()
    kinds = [type(r).__name__ for r in results]
    assert kinds == [
        "PlaceResult", "PlaceResult", "ValueError", "UnknownAccountError", "PlaceResult",
        "RuntimeError", "PlaceResult",
    ]  # fmt: skip
    assert isinstance(results[3], UnknownAccountError)
    ok = [r for r in results if isinstance(r, PlaceResult)]
    assert [r.status for r in ok] == [OPEN, FILLED, OPEN, OPEN]
    assert_stored_as_answered(sessions, exchange, ok)  # the failed ones left no row
    assert exchange.books["AZC/SATS"].get(ok[0].order_id) is not None
    assert exchange.books["AZC/SATS"].get(ok[0].order_id).remaining == 3  # type: ignore[union-attr]
    audit(sessions, exchange)


def test_the_queue_shares_commits_and_answers_only_committed_orders(
    sessions: Sessions,
) -> None:
    """300 concurrent callers: fewer transactions than orders, every answer matches the stored
    order, the audit is clean; after stop the queue refuses new orders."""
    members = [fund(sessions, f"q{i}", SATS=10**9, AZC=10**12) for i in range(6)]
    exchange = Exchange(sessions, MARKETS)
    commands = random_commands(random.Random(9), members, 300)

    async def scenario() -> tuple[list[PlaceResult], OrderQueue]:
        queue = OrderQueue(exchange, max_batch=64)
        stop = asyncio.Event()
        worker = asyncio.create_task(queue.run(stop))
        await asyncio.sleep(0)
        results = await asyncio.gather(*(queue.submit(c) for c in commands))
        stop.set()
        await worker
        with pytest.raises(QueueClosedError):
            await queue.place(members[0], "AZC/SATS", BUY, 1_000, 1)
        return results, queue

    results, queue = asyncio.run(scenario())
    assert queue.orders == 300
    assert queue.batches < 300 // 2  # commits were shared
    assert_stored_as_answered(sessions, exchange, results)
    assert len({r.order_id for r in results}) == 300
    audit(sessions, exchange)


def test_orders_queued_before_stop_are_still_placed(sessions: Sessions) -> None:
    alice = fund(sessions, "alice", SATS=1_000_000)
    exchange = Exchange(sessions, MARKETS)

    async def scenario() -> list[PlaceResult]:
        queue = OrderQueue(exchange)
        stop = asyncio.Event()
        worker = asyncio.create_task(queue.run(stop))
        await asyncio.sleep(0)
        pending = [asyncio.create_task(queue.place(alice, "AZC/SATS", BUY, 900, 1))
                   for _ in range(5)]  # fmt: skip
        await asyncio.sleep(0)
        stop.set()
        await worker
        return [await p for p in pending]

    results = asyncio.run(scenario())
    assert [r.status for r in results] == [OPEN] * 5
    assert len(exchange.books["AZC/SATS"]) == 5
    audit(sessions, exchange)


def test_a_database_refusal_at_write_time_rolls_everything_back(sessions: Sessions) -> None:
    """The writes of a transaction go out together at the end (one pipeline on PostgreSQL):
    when the database refuses one of them — here a trade whose sequence number is already
    stored, after the stored sequence was wound back — the whole order is rolled back, the
    caller gets the error, and book and ledger are as before."""
    alice = fund(sessions, "alice", SATS=1_000_000)
    bob = fund(sessions, "bob", AZC=100_000_000)
    exchange = Exchange(sessions, MARKETS)
    exchange.place_order(bob, "AZC/SATS", SELL, 1_000, 5)
    exchange.place_order(alice, "AZC/SATS", BUY, 1_000, 1)  # a trade at the current sequence
    with sessions.begin() as s:
        state = s.get(MarketState, "AZC/SATS")
        assert state is not None
        state.next_seq -= 3  # the trade's sequence number comes round again
    with sessions.begin() as s:
        before = dict(Ledger(s).balances(alice)), dict(Ledger(s).balances(bob))
    with pytest.raises(IntegrityError):
        exchange.place_order(alice, "AZC/SATS", BUY, 1_000, 1)
    with sessions.begin() as s:
        assert (dict(Ledger(s).balances(alice)), dict(Ledger(s).balances(bob))) == before
    audit(sessions, exchange)
