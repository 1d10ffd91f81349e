"""The trading glue: reservation, matching and ledger postings in one transaction; restart."""

from __future__ import annotations

import random
import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.ledger import AZC, FEES, NODE_WALLET, SATS, Ledger, verify
from scnode_exchange.ledger.models import JournalEntry
from scnode_exchange.matching import (
    Cancelled,
    CancelReason,
    Fill,
    MarketSpec,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
)
from scnode_exchange.trading.models import Order, Trade
from scnode_exchange.trading.service import (
    CANCELLED,
    FILLED,
    OPEN,
    REJECTED,
    Exchange,
    OrderNotFoundError,
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


def balances(sessions: Sessions, member: int) -> dict[str, tuple[int, int]]:
    with sessions.begin() as s:
        return dict(Ledger(s).balances(member))


def audit(sessions: Sessions, exchange: Exchange) -> None:
    with sessions.begin() as s:
        report = verify(s)
        problems = report.problems + verify_orders(s, MARKETS)
    assert problems == []
    for symbol, book in exchange.books.items():
        assert exchange.load_book(symbol).snapshot() == book.snapshot()


@pytest.fixture
def exchange(sessions: Sessions) -> Exchange:
    return Exchange(sessions, MARKETS)


def test_a_resting_order_reserves_and_cancel_releases(
    sessions: Sessions, exchange: Exchange
) -> None:
    alice = fund(sessions, "alice", SATS=100_000)
    result = exchange.place_order(alice, "AZC/SATS", BUY, 1_000, 30)
    assert result.status == OPEN
    assert balances(sessions, alice)[SATS] == (100_000, 30_000)
    events = exchange.cancel_order(alice, result.order_id)
    assert isinstance(events[0], Cancelled) and events[0].reason is CancelReason.REQUESTED
    assert balances(sessions, alice)[SATS] == (100_000, 0)
    with sessions.begin() as s:
        assert s.get(Order, result.order_id).status == CANCELLED  # type: ignore[union-attr]
    audit(sessions, exchange)


def test_a_trade_moves_both_assets_and_fees_exactly(sessions: Sessions, exchange: Exchange) -> None:
    alice = fund(sessions, "alice", SATS=100_000)
    bob = fund(sessions, "bob", AZC=50_000_000)
    ask = exchange.place_order(bob, "AZC/SATS", SELL, 1_230, 7)  # maker: 7 lots = 0.07 AZC
    bid = exchange.place_order(alice, "AZC/SATS", BUY, 1_250, 10)  # taker, rests 3 lots
    (fill,) = [e for e in bid.events if isinstance(e, Fill)]
    assert (fill.price, fill.quantity, fill.quote_amount) == (1_230, 7, 8_610)
    # buyer: pays 8,610 sats, receives 7,000,000 azsat minus the taker fee (20 bps, rounded up)
    assert fill.buyer_fee == 14_000 and fill.seller_fee == 9  # 8.61 -> 9 sats at 10 bps
    assert balances(sessions, alice) == {
        SATS: (100_000 - 8_610, 3 * 1_250), AZC: (7_000_000 - 14_000, 0), "MICRO": (0, 0),
    }  # fmt: skip
    assert balances(sessions, bob) == {
        SATS: (8_610 - 9, 0), AZC: (50_000_000 - 7_000_000, 0), "MICRO": (0, 0),
    }  # fmt: skip
    with sessions.begin() as s:
        ledger = Ledger(s)
        assert ledger.system_account(FEES, SATS).balance == 9
        assert ledger.system_account(FEES, AZC).balance == 14_000
        trade = s.scalars(select(Trade)).one()
        assert (trade.buyer_id, trade.seller_id, trade.maker_order_id) == (alice, bob, ask.order_id)
        assert s.get(JournalEntry, trade.entry_id).kind == "trade"  # type: ignore[union-attr]
        assert s.get(Order, ask.order_id).status == FILLED  # type: ignore[union-attr]
        assert s.get(Order, bid.order_id).remaining == 3  # type: ignore[union-attr]
    audit(sessions, exchange)


def test_insufficient_funds_rejects_without_touching_the_book(
    sessions: Sessions, exchange: Exchange
) -> None:
    alice = fund(sessions, "alice", SATS=999)
    result = exchange.place_order(alice, "AZC/SATS", BUY, 1_000, 1)
    assert result.status == REJECTED and result.reject_reason == RejectReason.INSUFFICIENT_FUNDS
    assert len(exchange.books["AZC/SATS"]) == 0
    assert balances(sessions, alice)[SATS] == (999, 0)
    audit(sessions, exchange)


def test_frozen_member_cannot_place(sessions: Sessions, exchange: Exchange) -> None:
    alice = fund(sessions, "alice", SATS=10_000)
    with sessions.begin() as s:
        Ledger(s).freeze(alice, "owner review")
    result = exchange.place_order(alice, "AZC/SATS", BUY, 1_000, 1)
    assert result.reject_reason == RejectReason.MEMBER_FROZEN


def test_invalid_tick_is_rejected_and_stored(sessions: Sessions, exchange: Exchange) -> None:
    alice = fund(sessions, "alice", SATS=10_000)
    result = exchange.place_order(alice, "AZC/SATS", BUY, 1_005, 1)
    assert result.reject_reason == RejectReason.INVALID_PRICE
    with sessions.begin() as s:
        assert s.get(Order, result.order_id).status == REJECTED  # type: ignore[union-attr]


@pytest.mark.parametrize("price", [1000.0, "1000", 2**70])
def test_non_integer_or_oversized_amounts_are_refused_before_storing(
    sessions: Sessions, exchange: Exchange, price: object
) -> None:
    alice = fund(sessions, "alice", SATS=10_000)
    with pytest.raises(ValueError, match="integer"):
        exchange.place_order(alice, "AZC/SATS", BUY, price, 1)  # type: ignore[arg-type]
    with sessions.begin() as s:
        assert s.scalar(select(func.count(Order.id))) == 0
    with pytest.raises(ValueError, match="unknown market"):
        exchange.place_order(alice, "BTC/USD", BUY, 1000, 1)


def test_market_limits_keep_every_amount_within_bigint() -> None:
    with pytest.raises(ValueError, match="BIGINT"):
        MarketSpec("X/SATS", "X", SATS, lot_size=10**8, tick=1, max_quantity=10**12)


def test_post_only_that_would_take_releases_its_reservation(
    sessions: Sessions, exchange: Exchange
) -> None:
    alice = fund(sessions, "alice", SATS=10_000)
    bob = fund(sessions, "bob", AZC=10_000_000)
    exchange.place_order(bob, "AZC/SATS", SELL, 1_000, 1)
    result = exchange.place_order(alice, "AZC/SATS", BUY, 1_000, 1, tif=TimeInForce.POST_ONLY)
    assert result.reject_reason == RejectReason.WOULD_TAKE
    assert balances(sessions, alice)[SATS] == (10_000, 0)
    audit(sessions, exchange)


def test_market_buy_pays_fills_and_releases_the_protection_margin(
    sessions: Sessions, exchange: Exchange
) -> None:
    alice = fund(sessions, "alice", SATS=10_000)
    bob = fund(sessions, "bob", MICRO=1_000)
    exchange.place_order(bob, "MICRO/SATS", SELL, 50, 2)
    exchange.place_order(bob, "MICRO/SATS", SELL, 70, 2)
    result = exchange.place_order(alice, "MICRO/SATS", BUY, 60, 4, OrderType.MARKET)
    assert result.status == CANCELLED  # 2 lots filled at 50, the rest beyond protection
    assert balances(sessions, alice)[SATS] == (10_000 - 100, 0)
    assert balances(sessions, alice)["MICRO"] == (200, 0)
    audit(sessions, exchange)


def test_self_trade_prevention_releases_the_resting_order(
    sessions: Sessions, exchange: Exchange
) -> None:
    alice = fund(sessions, "alice", SATS=10_000, MICRO=1_000)
    ask = exchange.place_order(alice, "MICRO/SATS", SELL, 50, 3)
    assert balances(sessions, alice)["MICRO"] == (1_000, 300)
    bid = exchange.place_order(alice, "MICRO/SATS", BUY, 50, 3)
    assert bid.status == OPEN  # nothing traded: the own resting order was cancelled
    assert balances(sessions, alice)["MICRO"] == (1_000, 0)
    with sessions.begin() as s:
        assert s.get(Order, ask.order_id).status == CANCELLED  # type: ignore[union-attr]
        assert s.scalar(select(func.count(Trade.id))) == 0
    audit(sessions, exchange)


def test_a_member_cannot_cancel_another_members_order(
    sessions: Sessions, exchange: Exchange
) -> None:
    alice = fund(sessions, "alice", SATS=10_000)
    mallory = fund(sessions, "mallory")
    result = exchange.place_order(alice, "AZC/SATS", BUY, 1_000, 1)
    with pytest.raises(OrderNotFoundError):
        exchange.cancel_order(mallory, result.order_id)
    with pytest.raises(OrderNotFoundError):
        exchange.cancel_order(alice, 987_654)
    assert result.order_id in exchange.books["AZC/SATS"]


def test_restart_rebuilds_the_same_book_and_sequence(
    sessions: Sessions, exchange: Exchange
) -> None:
    alice = fund(sessions, "alice", SATS=1_000_000)
    bob = fund(sessions, "bob", AZC=1_000_000_000)
    for i in range(10):
        exchange.place_order(alice, "AZC/SATS", BUY, 1_000 + 10 * (i % 3), 2)
        exchange.place_order(bob, "AZC/SATS", SELL, 1_020 + 10 * (i % 4), 3)
    exchange.place_order(bob, "AZC/SATS", SELL, 1_000, 5)
    restarted = Exchange(sessions, MARKETS)
    for symbol in ("AZC/SATS", "MICRO/SATS"):
        assert restarted.books[symbol].snapshot() == exchange.books[symbol].snapshot()
        assert restarted.books[symbol].next_seq == exchange.books[symbol].next_seq
    audit(sessions, restarted)


def test_a_failed_transaction_leaves_book_and_ledger_unchanged(
    sessions: Sessions, exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = fund(sessions, "alice", SATS=100_000)
    bob = fund(sessions, "bob", AZC=50_000_000)
    exchange.place_order(bob, "AZC/SATS", SELL, 1_000, 5)
    before = exchange.books["AZC/SATS"].snapshot()

    def crash(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("database went away mid-fill")

    monkeypatch.setattr(Exchange, "_post_fill", crash)
    with pytest.raises(RuntimeError):
        exchange.place_order(alice, "AZC/SATS", BUY, 1_000, 5)
    monkeypatch.undo()
    assert exchange.books["AZC/SATS"].snapshot() == before
    assert balances(sessions, alice)[SATS] == (100_000, 0)
    result = exchange.place_order(alice, "AZC/SATS", BUY, 1_000, 5)
    assert result.status == FILLED
    audit(sessions, exchange)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_operations_keep_the_books_and_the_ledger_exact(
    sessions: Sessions, exchange: Exchange, seed: int
) -> None:
    """400 seeded random places/cancels/market orders across both markets: after each batch
    the audit is clean and the book rebuilt from the database equals the book in memory."""
    rng = random.Random(seed)
    members = [
        fund(sessions, f"r{seed}-{i}", SATS=5_000_000, AZC=5_000_000_000, MICRO=50_000)
        for i in range(4)
    ]
    placed: list[tuple[int, int]] = []
    fills = 0
    for step in range(1, 401):
        spec = rng.choice(MARKETS)
        member = rng.choice(members)
        if placed and rng.random() < 0.2:
            owner, order_id = placed.pop(rng.randrange(len(placed)))
            if any(order_id in book for book in exchange.books.values()):
                exchange.cancel_order(owner, order_id)
            continue
        side = rng.choice([BUY, SELL])
        price = (100 + rng.randint(-3, 3)) * spec.tick
        kind = OrderType.MARKET if rng.random() < 0.1 else OrderType.LIMIT
        tif = rng.choice([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.POST_ONLY])
        if kind is OrderType.MARKET:
            tif = TimeInForce.IOC
        result = exchange.place_order(
            member, spec.symbol, side, price, rng.randint(1, 40), kind, tif
        )
        fills += sum(isinstance(e, Fill) for e in result.events)
        if result.status == OPEN:
            placed.append((member, result.order_id))
        if step % 100 == 0:
            audit(sessions, exchange)
    assert fills > 50  # the mix really trades


def test_concurrent_callers_keep_book_and_ledger_consistent(
    sessions: Sessions, exchange: Exchange
) -> None:
    """Four threads place and cancel at once (as API workers would): the exchange serializes
    them, the audit stays clean and the stored book equals the one in memory."""
    members = [fund(sessions, f"c{i}", SATS=2_000_000, AZC=2_000_000_000) for i in range(4)]
    errors: list[BaseException] = []

    def worker(member: int, seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(40):
                side = rng.choice([BUY, SELL])
                result = exchange.place_order(
                    member, "AZC/SATS", side, (100 + rng.randint(-2, 2)) * 10, rng.randint(1, 9)
                )
                if result.status == OPEN and rng.random() < 0.3:
                    try:
                        exchange.cancel_order(member, result.order_id)
                    except OrderNotFoundError:  # another thread's order filled it meanwhile
                        assert result.order_id not in exchange.books["AZC/SATS"]
        except BaseException as exc:  # reported below; a thread must not swallow it
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(m, i)) for i, m in enumerate(members)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with sessions.begin() as s:
        assert (s.scalar(select(func.count(Trade.id))) or 0) > 0
    audit(sessions, exchange)
