"""Placing and cancelling orders: the engine and the ledger in one database transaction.

``Exchange.place_order`` reserves the order's funds, runs the matching engine, posts every
fill as one balanced journal entry (buyer, seller, fee account), and stores the order, trade
and sequence rows — all in one transaction. If anything fails, the transaction rolls back and
the in-memory book is rebuilt from the database, so memory never runs ahead of what is stored.

One process owns a market's book (the exchange service). The ``market_state`` row is locked in
every write transaction, so a second writer would wait rather than interleave; it would still
hold a stale book, which is why ``place_order`` checks the stored sequence and reloads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.ledger import (
    FEES,
    InsufficientFundsError,
    Ledger,
    Leg,
    Member,
    MemberFrozenError,
    UnknownAccountError,
)
from scnode_exchange.ledger.models import Hold
from scnode_exchange.matching import (
    BIGINT_MAX,
    Accepted,
    Cancelled,
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
)
from scnode_exchange.trading.models import MarketState, Order, Trade

OPEN = "open"
FILLED = "filled"
CANCELLED = "cancelled"
REJECTED = "rejected"


class OrderNotFoundError(LookupError):
    """No open order with that id belongs to the caller (others' orders look the same)."""


@dataclass
class PlaceResult:
    """What became of a placed order: its id, final status and every event it caused."""

    order_id: int
    status: str
    events: list[Event] = field(default_factory=list)
    reject_reason: str | None = None


def hold_amount(spec: MarketSpec, side: Side, price: int, quantity: int) -> tuple[str, int]:
    """``(asset, amount)`` an order reserves: a buy the sats at its (protection) price, a sell
    its base units. Fees never need reserving: they come out of what each side receives."""
    if side is Side.BUY:
        return spec.quote, spec.quote_amount(price, quantity)
    return spec.base, spec.base_amount(quantity)


class Exchange:
    """The markets of one exchange: in-memory books backed by the database."""

    def __init__(self, sessions: sessionmaker[Session], markets: Iterable[MarketSpec]) -> None:
        self.sessions = sessions
        self.markets = {spec.symbol: spec for spec in markets}
        self.books: dict[str, OrderBook] = {}
        # account ids never change once created: look each up once
        self._member_accounts: dict[tuple[int, str], int] = {}
        self._fee_accounts: dict[str, int] = {}
        self._lock = threading.Lock()
        with self._lock:
            for symbol in self.markets:
                self.books[symbol] = self.load_book(symbol)

    # --- restart ----------------------------------------------------------------------------

    def load_book(self, market: str) -> OrderBook:
        """The book of ``market`` rebuilt from the stored open orders and sequence."""
        spec = self.markets[market]
        with self.sessions.begin() as session:
            state = session.get(MarketState, market)
            if state is None:
                state = MarketState(market=market, next_seq=1)
                session.add(state)
                session.flush()
            return book_from_db(session, spec, state.next_seq)

    # --- commands ---------------------------------------------------------------------------

    def place_order(
        self,
        member_id: int,
        market: str,
        side: Side,
        price: int,
        quantity: int,
        order_type: OrderType = OrderType.LIMIT,
        tif: TimeInForce = TimeInForce.GTC,
    ) -> PlaceResult:
        """Place an order for ``member_id``; see the module docstring for what happens."""
        spec = self.markets.get(market)
        if spec is None:
            raise ValueError(f"unknown market {market!r}")
        for name, value in (("price", price), ("quantity", quantity)):
            # refuse before anything is stored: amounts are integers that fit a BIGINT
            if type(value) is not int or not -BIGINT_MAX <= value <= BIGINT_MAX:
                raise ValueError(f"{name} must be an integer, got {value!r}")
        with self._lock:
            book = self.books[market]
            try:
                with self.sessions.begin() as session:
                    state = self._market_state(session, market, book)
                    book = self.books[market]
                    if session.get(Member, member_id) is None:
                        raise UnknownAccountError(f"no member {member_id}")
                    order = Order(
                        market=market, member_id=member_id, side=side.value,
                        type=order_type.value, tif=tif.value, price=price,
                        quantity=quantity, remaining=0, status=REJECTED,
                    )  # fmt: skip
                    session.add(order)
                    session.flush()
                    req = OrderRequest(order.id, member_id, side, price, quantity, order_type, tif)
                    events = self._reserve_and_place(session, spec, book, req, order)
                    self._apply(session, spec, events, {order.id: order})
                    state.next_seq = book.next_seq
                    return PlaceResult(order.id, order.status, events, order.reject_reason)
            except BaseException:
                self.books[market] = self.load_book(market)
                raise

    def cancel_order(self, member_id: int, order_id: int) -> list[Event]:
        """Cancel one of the caller's open orders and release what it still holds."""
        with self._lock:
            market = None
            try:
                with self.sessions.begin() as session:
                    order = session.get(Order, order_id, with_for_update=True)
                    if order is None or order.member_id != member_id or order.status != OPEN:
                        raise OrderNotFoundError(f"no open order {order_id} of member {member_id}")
                    market = order.market
                    state = self._market_state(session, market, self.books[market])
                    book = self.books[market]
                    events = book.cancel(order_id)
                    self._apply(session, self.markets[market], events, {order.id: order})
                    state.next_seq = book.next_seq
                    return events
            except OrderNotFoundError:
                raise
            except BaseException:
                if market is not None:
                    self.books[market] = self.load_book(market)
                raise

    # --- internals --------------------------------------------------------------------------

    def _market_state(self, session: Session, market: str, book: OrderBook) -> MarketState:
        state = session.get(MarketState, market, with_for_update=True, populate_existing=True)
        if state is None:
            state = MarketState(market=market, next_seq=book.next_seq)
            session.add(state)
            session.flush()
        elif state.next_seq != book.next_seq:
            # another writer moved the market on: continue from what is stored
            self.books[market] = book_from_db(session, self.markets[market], state.next_seq)
        return state

    def _reserve_and_place(
        self, session: Session, spec: MarketSpec, book: OrderBook, req: OrderRequest, order: Order
    ) -> list[Event]:
        if book.validate(req) is not None:
            return book.place(req)  # the engine reports why; nothing to reserve
        ledger = Ledger(session)
        asset, amount = hold_amount(spec, req.side, req.price, req.quantity)
        try:
            hold = ledger.reserve(
                self._account_id(ledger, req.member_id, asset),
                amount,
                f"order {req.order_id} on {spec.symbol}",
                reference=f"order:{req.order_id}",
            )
        except InsufficientFundsError:
            return book.reject(req.order_id, RejectReason.INSUFFICIENT_FUNDS)
        except MemberFrozenError:
            return book.reject(req.order_id, RejectReason.MEMBER_FROZEN)
        order.hold_id = hold.id
        return book.place(req)

    def _apply(
        self, session: Session, spec: MarketSpec, events: list[Event], orders: dict[int, Order]
    ) -> None:
        ledger = Ledger(session)

        def get(order_id: int) -> Order:
            found = orders.get(order_id)
            if found is None:
                found = session.get(Order, order_id)
                assert found is not None, f"order {order_id} is on the book but not stored"
                orders[order_id] = found
            return found

        for event in events:
            if isinstance(event, Accepted):
                taker = get(event.order_id)
                taker.status, taker.priority, taker.remaining = OPEN, event.seq, event.quantity
            elif isinstance(event, Fill):
                self._post_fill(session, ledger, spec, event, get(event.buy_order_id),
                                get(event.sell_order_id))  # fmt: skip
            elif isinstance(event, Cancelled):
                order = get(event.order_id)
                order.remaining = 0
                self._release(ledger, order)
            elif isinstance(event, Done):
                get(event.order_id).status = FILLED if event.reason == "filled" else CANCELLED
            elif isinstance(event, Rejected):
                order = get(event.order_id)
                order.status, order.reject_reason, order.remaining = REJECTED, event.reason, 0
                self._release(ledger, order)
        session.flush()

    def _release(self, ledger: Ledger, order: Order) -> None:
        if order.hold_id is None:
            return
        hold = ledger.session.get(Hold, order.hold_id)
        if hold is not None and hold.is_open and hold.remaining:
            ledger.release(hold)

    def _account_id(self, ledger: Ledger, member_id: int, asset: str) -> int:
        key = (member_id, asset)
        found = self._member_accounts.get(key)
        if found is None:
            found = self._member_accounts[key] = ledger.member_account(member_id, asset).id
        return found

    def _fee_account_id(self, ledger: Ledger, asset: str) -> int:
        found = self._fee_accounts.get(asset)
        if found is None:
            found = self._fee_accounts[asset] = ledger.system_account(FEES, asset).id
        return found

    def _post_fill(
        self,
        session: Session,
        ledger: Ledger,
        spec: MarketSpec,
        fill: Fill,
        buy: Order,
        sell: Order,
    ) -> None:
        assert buy.hold_id is not None and sell.hold_id is not None
        quote, base = spec.quote, spec.base
        account = self._account_id
        legs = [
            Leg(account(ledger, buy.member_id, quote), -fill.quote_amount, buy.hold_id),
            Leg(account(ledger, sell.member_id, quote), fill.quote_amount - fill.seller_fee),
            Leg(self._fee_account_id(ledger, quote), fill.seller_fee),
            Leg(account(ledger, sell.member_id, base), -fill.base_amount, sell.hold_id),
            Leg(account(ledger, buy.member_id, base), fill.base_amount - fill.buyer_fee),
            Leg(self._fee_account_id(ledger, base), fill.buyer_fee),
        ]
        entry = ledger.post(
            "trade",
            f"{spec.symbol} fill {fill.quantity} lots at {fill.price}: "
            f"order {buy.id} buys from order {sell.id}",
            [leg for leg in legs if leg.amount],
            reference=f"trade:{spec.symbol}:{fill.seq}",
            actor="matching",
        )
        # a buy filled below its limit keeps only what its remaining lots can still cost
        excess = (buy.price - fill.price) * fill.quantity
        if excess:
            ledger.release(buy.hold_id, excess)
        buy.remaining -= fill.quantity
        sell.remaining -= fill.quantity
        session.add(
            Trade(
                market=spec.symbol, seq=fill.seq, maker_order_id=fill.maker_order_id,
                taker_order_id=fill.taker_order_id, buyer_id=buy.member_id,
                seller_id=sell.member_id, taker_side=fill.taker_side.value, price=fill.price,
                quantity=fill.quantity, base_amount=fill.base_amount,
                quote_amount=fill.quote_amount, buyer_fee=fill.buyer_fee,
                seller_fee=fill.seller_fee, entry_id=entry.id,
            )
        )  # fmt: skip


def book_from_db(session: Session, spec: MarketSpec, next_seq: int) -> OrderBook:
    """Rebuild the book of ``spec`` from its open orders in the database."""
    rows = session.scalars(
        select(Order)
        .where(Order.market == spec.symbol, Order.status == OPEN)
        .order_by(Order.priority)
    )
    return OrderBook.rebuild(
        spec,
        [
            RestingOrder(o.id, o.member_id, Side(o.side), o.price, o.remaining, o.priority or 0)
            for o in rows
        ],
        next_seq,
    )


def verify_orders(session: Session, specs: Iterable[MarketSpec]) -> list[str]:
    """Problems between orders and holds: an open order holds exactly what its remaining lots
    can cost (buy: remaining * price sats; sell: remaining * lot_size base units); a finished
    order holds nothing."""
    problems = []
    by_symbol = {spec.symbol: spec for spec in specs}
    rows = session.execute(select(Order, Hold).outerjoin(Hold, Order.hold_id == Hold.id))
    for order, hold in rows:
        spec = by_symbol.get(order.market)
        if spec is None:
            continue
        held = hold.remaining if hold is not None and hold.is_open else 0
        if order.status == OPEN:
            _, expected = hold_amount(spec, Side(order.side), order.price, order.remaining)
        else:
            expected = 0
        if held != expected:
            problems.append(f"order {order.id} ({order.status}) holds {held}, expected {expected}")
    return problems
