"""Rules of the matching engine, one test per rule, plus a property test against a naive
reference book."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scnode_exchange.matching import (
    Accepted,
    Cancelled,
    CancelReason,
    Done,
    Event,
    Fill,
    MarketSpec,
    OrderBook,
    OrderRequest,
    OrderType,
    Rejected,
    RejectReason,
    RestingOrder,
    Side,
    TimeInForce,
    ceil_fee,
)

SPEC = MarketSpec("AZC/SATS", "AZC", "SATS", lot_size=1_000_000, tick=10, maker_fee_bps=10,
                  taker_fee_bps=20)  # fmt: skip
BUY, SELL = Side.BUY, Side.SELL
_ids = itertools.count(1)


def order(
    book: OrderBook,
    member: int,
    side: Side,
    price: int,
    qty: int,
    tif: TimeInForce = TimeInForce.GTC,
    kind: OrderType = OrderType.LIMIT,
    order_id: int | None = None,
) -> tuple[int, list[Event]]:
    oid = next(_ids) if order_id is None else order_id
    return oid, book.place(OrderRequest(oid, member, side, price, qty, kind, tif))


def fills(events: list[Event]) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill)]


def test_units_quote_is_price_times_lots_and_base_is_lots_times_lot_size() -> None:
    book = OrderBook(SPEC)
    ask, _ = order(book, 1, SELL, 1230, 7)
    _, events = order(book, 2, BUY, 1230, 7)
    (fill,) = fills(events)
    assert (fill.quote_amount, fill.base_amount) == (1230 * 7, 7 * 1_000_000)
    assert fill.maker_order_id == ask and fill.price == 1230


def test_fees_round_up_in_the_exchange_favour_and_never_below_zero() -> None:
    assert ceil_fee(8610, 20) == 18  # 17.22 -> 18
    assert ceil_fee(1, 1) == 1
    assert ceil_fee(10_000, 10) == 10
    assert ceil_fee(12345, 0) == 0
    assert ceil_fee(0, 20) == 0
    book = OrderBook(SPEC)
    order(book, 1, SELL, 1230, 7)  # maker sells: seller fee at maker rate, in sats
    _, events = order(book, 2, BUY, 1240, 7)  # taker buys: buyer fee at taker rate, in base
    (fill,) = fills(events)
    assert fill.seller_fee == ceil_fee(8610, 10) == 9
    assert fill.buyer_fee == ceil_fee(7_000_000, 20) == 14_000


def test_fee_rates_are_validated() -> None:
    with pytest.raises(ValueError):
        MarketSpec("X/Y", "X", "Y", 1, 1, maker_fee_bps=-1)
    with pytest.raises(ValueError):
        MarketSpec("X/Y", "X", "Y", 0, 1)


def test_fill_at_maker_price_price_priority_then_time_priority() -> None:
    book = OrderBook(SPEC)
    a1, _ = order(book, 1, SELL, 1010, 2)
    a2, _ = order(book, 2, SELL, 1000, 2)
    a3, _ = order(book, 3, SELL, 1000, 2)
    _, events = order(book, 4, BUY, 1010, 5)
    assert [(f.maker_order_id, f.price, f.quantity) for f in fills(events)] == [
        (a2, 1000, 2), (a3, 1000, 2), (a1, 1010, 1),
    ]  # fmt: skip
    assert book.get(a1) is not None and book.get(a1).remaining == 1  # type: ignore[union-attr]


def test_partial_fill_rests_the_remainder_gtc() -> None:
    book = OrderBook(SPEC)
    order(book, 1, SELL, 1000, 3)
    bid, events = order(book, 2, BUY, 1000, 5)
    assert sum(f.quantity for f in fills(events)) == 3
    assert book.best_bid() == 1000 and book.get(bid).remaining == 2  # type: ignore[union-attr]
    assert book.best_ask() is None


def test_no_trade_when_prices_do_not_cross() -> None:
    book = OrderBook(SPEC)
    order(book, 1, SELL, 1010, 3)
    _, events = order(book, 2, BUY, 1000, 3)
    assert fills(events) == []
    assert (book.best_bid(), book.best_ask()) == (1000, 1010)


def test_ioc_cancels_its_remainder() -> None:
    book = OrderBook(SPEC)
    order(book, 1, SELL, 1000, 3)
    oid, events = order(book, 2, BUY, 1000, 5, TimeInForce.IOC)
    assert sum(f.quantity for f in fills(events)) == 3
    assert Cancelled(events[-2].seq, oid, 2, CancelReason.IOC_REMAINDER) == events[-2]
    assert isinstance(events[-1], Done) and events[-1].reason == "cancelled"
    assert oid not in book and book.best_bid() is None


def test_post_only_is_rejected_when_it_would_take_and_rests_otherwise() -> None:
    book = OrderBook(SPEC)
    order(book, 1, SELL, 1000, 3)
    _, events = order(book, 2, BUY, 1000, 1, TimeInForce.POST_ONLY)
    assert isinstance(events[0], Rejected) and events[0].reason is RejectReason.WOULD_TAKE
    oid, events = order(book, 2, BUY, 990, 1, TimeInForce.POST_ONLY)
    assert [type(e) for e in events] == [Accepted] and oid in book


def test_market_order_stops_at_its_protection_price() -> None:
    book = OrderBook(SPEC)
    order(book, 1, SELL, 1000, 1)
    order(book, 1, SELL, 1100, 1)
    order(book, 1, SELL, 1300, 1)
    oid, events = order(book, 2, BUY, 1100, 3, kind=OrderType.MARKET)
    assert [f.price for f in fills(events)] == [1000, 1100]
    assert isinstance(events[-2], Cancelled) and events[-2].remaining == 1
    assert oid not in book and book.best_ask() == 1300
    _, events = order(book, 2, BUY, 1300, 1, TimeInForce.POST_ONLY, OrderType.MARKET)
    assert isinstance(events[0], Rejected) and events[0].reason is RejectReason.INVALID_ORDER


def test_self_trade_prevention_cancels_the_resting_order_and_continues() -> None:
    book = OrderBook(SPEC)
    own, _ = order(book, 7, SELL, 1000, 2)
    other, _ = order(book, 8, SELL, 1000, 2)
    _, events = order(book, 7, BUY, 1000, 2)
    stp = [e for e in events if isinstance(e, Cancelled)]
    assert stp == [Cancelled(stp[0].seq, own, 2, CancelReason.SELF_TRADE)]
    assert [(f.maker_order_id, f.quantity) for f in fills(events)] == [(other, 2)]
    assert own not in book and all(f.maker_member_id != 7 for f in fills(events))


@pytest.mark.parametrize(
    ("price", "qty", "reason"),
    [
        (1005, 1, RejectReason.INVALID_PRICE),  # not a multiple of the tick
        (0, 1, RejectReason.INVALID_PRICE),
        (-10, 1, RejectReason.INVALID_PRICE),
        (1000, 0, RejectReason.INVALID_QUANTITY),
        (1000, -3, RejectReason.INVALID_QUANTITY),
        (1000, 10**9 + 1, RejectReason.INVALID_QUANTITY),
        (10**9 + 10, 1, RejectReason.INVALID_PRICE),
    ],
)
def test_tick_and_lot_validation(price: int, qty: int, reason: RejectReason) -> None:
    book = OrderBook(SPEC)
    _, events = order(book, 1, BUY, price, qty)
    assert [type(e) for e in events] == [Rejected] and events[0].reason is reason  # type: ignore[union-attr]
    assert len(book) == 0


def test_float_amounts_are_refused() -> None:
    book = OrderBook(SPEC)
    _, events = order(book, 1, BUY, 1000.0, 1)  # type: ignore[arg-type]
    assert isinstance(events[0], Rejected)


def test_duplicate_id_and_unknown_cancel_are_rejected() -> None:
    book = OrderBook(SPEC)
    oid, _ = order(book, 1, BUY, 1000, 1)
    _, events = order(book, 1, BUY, 1000, 1, order_id=oid)
    assert events[0].reason is RejectReason.DUPLICATE_ORDER  # type: ignore[union-attr]
    assert book.cancel(999_999)[0].reason is RejectReason.UNKNOWN_ORDER  # type: ignore[union-attr]


def test_cancel_removes_the_order_and_its_empty_level() -> None:
    book = OrderBook(SPEC)
    oid, _ = order(book, 1, BUY, 1000, 4)
    events = book.cancel(oid)
    assert isinstance(events[0], Cancelled) and events[0].remaining == 4
    assert isinstance(events[1], Done) and book.best_bid() is None and len(book) == 0


def test_sequence_numbers_are_consecutive_per_market() -> None:
    book = OrderBook(SPEC, next_seq=41)
    order(book, 1, SELL, 1000, 1)
    _, events = order(book, 2, BUY, 1000, 1)
    seqs = [e.seq for e in events]
    assert seqs == list(range(42, 42 + len(seqs)))
    assert book.next_seq == seqs[-1] + 1


def test_rebuild_restores_the_exact_book() -> None:
    book = OrderBook(SPEC)
    for i in range(30):
        order(book, i % 4, BUY if i % 2 else SELL, 1000 + (i % 5) * 10 * (1 if i % 2 else 3), 3)
    rebuilt = OrderBook.rebuild(SPEC, book.open_orders(), book.next_seq)
    assert rebuilt.snapshot() == book.snapshot()
    assert rebuilt.next_seq == book.next_seq
    with pytest.raises(ValueError):
        OrderBook.rebuild(SPEC, [RestingOrder(1, 1, BUY, 1000, 1, 5)], next_seq=5)


def test_depth_aggregates_levels_best_first() -> None:
    book = OrderBook(SPEC)
    order(book, 1, BUY, 1000, 1)
    order(book, 2, BUY, 1000, 2)
    order(book, 3, BUY, 990, 5)
    order(book, 4, SELL, 1020, 1)
    order(book, 4, SELL, 1010, 1)
    assert book.depth(BUY) == [(1000, 3), (990, 5)]
    assert book.depth(SELL) == [(1010, 1), (1020, 1)]


# --- property test against a naive reference -------------------------------------------------


def _reference_match(
    resting: list[RestingOrder], req: OrderRequest
) -> tuple[list[tuple[int, int, int]], int]:
    """Naive price-time matching: sort everything each time. Returns (maker, price, qty)."""
    out = []
    remaining = req.quantity
    buy = req.side is BUY
    while remaining:
        candidates = [
            o for o in resting
            if o.side is not req.side and (o.price <= req.price if buy else o.price >= req.price)
        ]  # fmt: skip
        if not candidates:
            break
        best = min(candidates, key=lambda o: (o.price if buy else -o.price, o.priority))
        if best.member_id == req.member_id:
            resting.remove(best)
            continue
        qty = min(best.remaining, remaining)
        out.append((best.order_id, best.price, qty))
        best.remaining -= qty
        remaining -= qty
        if not best.remaining:
            resting.remove(best)
    return out, remaining


orders_strategy = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.sampled_from([BUY, SELL]),
        st.integers(95, 105),
        st.integers(1, 5),
        st.sampled_from(list(TimeInForce)),
        st.booleans(),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops=orders_strategy)
def test_engine_matches_a_naive_reference(
    ops: list[tuple[int, Side, int, int, TimeInForce, bool]],
) -> None:
    book = OrderBook(SPEC)
    reference: list[RestingOrder] = []
    for n, (member, side, ticks, qty, tif, cancel_one) in enumerate(ops, start=1):
        if cancel_one and reference:
            victim = reference.pop(n % len(reference))
            assert isinstance(book.cancel(victim.order_id)[0], Cancelled)
            continue
        price = ticks * SPEC.tick
        req = OrderRequest(n, member, side, price, qty, OrderType.LIMIT, tif)
        events = book.place(req)
        crosses = any(
            o.side is not side and (o.price <= price if side is BUY else o.price >= price)
            for o in reference
        )
        if tif is TimeInForce.POST_ONLY and crosses:
            assert isinstance(events[0], Rejected)
            continue
        expected, left = _reference_match(reference, req)
        assert [(f.maker_order_id, f.price, f.quantity) for f in fills(events)] == expected
        if left and tif is not TimeInForce.IOC:
            accepted = events[0]
            reference.append(RestingOrder(n, member, side, price, left, accepted.seq))
        assert sorted((o.order_id, o.remaining) for o in book.open_orders()) == sorted(
            (o.order_id, o.remaining) for o in reference
        )
        best_bid, best_ask = book.best_bid(), book.best_ask()
        assert best_bid is None or best_ask is None or best_bid < best_ask
