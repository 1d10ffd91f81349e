"""Placing and cancelling orders: the engine and the ledger in one database transaction.

``Exchange.place_order`` reserves the order's funds, runs the matching engine, posts every
fill as one balanced journal entry (buyer, seller, fee account), and stores the order, trade
and sequence rows — all in one transaction. If anything fails, the transaction rolls back and
the in-memory book is rebuilt from the database, so memory never runs ahead of what is stored.
``Exchange.place_orders`` does the same for a batch of orders in ONE transaction (group
commit; ``trading.group.OrderQueue`` feeds it from many concurrent callers): no result is
returned before the commit.

The database work of a transaction goes through ``trading.writer.TradeWriter``: the same
ledger rules as ``Ledger``, checked on locked rows in memory and written with a few multi-row
Core statements at the end (instead of an ORM flush per object) — see that module.

One process owns a market's book (the exchange service). The ``market_state`` row is locked in
every write transaction, so a second writer would wait rather than interleave; it would still
hold a stale book, which is why ``place_order`` checks the stored sequence and reloads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.ledger import (
    FEES,
    Account,
    InsufficientFundsError,
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
from scnode_exchange.trading.models import MarketState, Order
from scnode_exchange.trading.writer import OrderRow, TradeWriter

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


@dataclass(frozen=True, slots=True)
class OrderCommand:
    """One order to place (the arguments of ``Exchange.place_order``)."""

    member_id: int
    market: str
    side: Side
    price: int
    quantity: int
    order_type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.GTC


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
        command = OrderCommand(member_id, market, side, price, quantity, order_type, tif)
        self._check(command)
        with self._lock:
            result = self._transaction([command])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def place_orders(self, commands: Sequence[OrderCommand]) -> list[PlaceResult | Exception]:
        """Place several orders in ONE transaction (group commit), in the given order.

        Each result is what ``place_order`` would have returned for that command, or the
        exception it would have raised. Nothing is returned before the commit, so every
        returned result is durable. If the batch's transaction fails, nothing of it is
        stored, the books are rebuilt, and each command is tried again in its own transaction,
        so one bad command costs only itself.
        """
        results: list[PlaceResult | Exception | None] = [None] * len(commands)
        valid: list[tuple[int, OrderCommand]] = []
        for i, command in enumerate(commands):
            try:
                self._check(command)
            except ValueError as exc:
                results[i] = exc
            else:
                valid.append((i, command))
        if valid:
            with self._lock:
                try:
                    placed = self._transaction([c for _, c in valid])
                    for (i, _), result in zip(valid, placed, strict=True):
                        results[i] = result
                except Exception as exc:
                    if len(valid) == 1:
                        results[valid[0][0]] = exc
                    else:
                        for i, command in valid:
                            try:
                                results[i] = self._transaction([command])[0]
                            except Exception as single:
                                results[i] = single
        return [r for r in results if r is not None]

    def cancel_order(self, member_id: int, order_id: int) -> list[Event]:
        """Cancel one of the caller's open orders and release what it still holds."""
        with self._lock:
            market = None
            try:
                with self.sessions.begin() as session:
                    writer = TradeWriter(session)
                    writer.load_orders([order_id], lock=True)
                    order = writer.orders.get(order_id)
                    if order is None or order.member_id != member_id or order.status != OPEN:
                        raise OrderNotFoundError(f"no open order {order_id} of member {member_id}")
                    market = order.market
                    self._lock_market(writer, market)
                    book = self.books[market]
                    events = book.cancel(order_id)
                    self._apply(writer, self.markets[market], events)
                    writer.set_next_seq(market, book.next_seq)
                    writer.flush()
                    return events
            except OrderNotFoundError:
                raise
            except BaseException:
                if market is not None:
                    self.books[market] = self.load_book(market)
                raise

    # --- internals --------------------------------------------------------------------------

    def _check(self, command: OrderCommand) -> None:
        if command.market not in self.markets:
            raise ValueError(f"unknown market {command.market!r}")
        for name, value in (("price", command.price), ("quantity", command.quantity)):
            # refuse before anything is stored: amounts are integers that fit a BIGINT
            if type(value) is not int or not -BIGINT_MAX <= value <= BIGINT_MAX:
                raise ValueError(f"{name} must be an integer, got {value!r}")

    def _transaction(self, commands: Sequence[OrderCommand]) -> list[PlaceResult | Exception]:
        """Place ``commands`` in one transaction; on any failure roll back and reload.

        An unknown member is answered with its UnknownAccountError without touching the
        transaction (it is found before anything of that order is written).
        """
        markets = sorted({c.market for c in commands})
        try:
            with self.sessions.begin() as session:
                writer = TradeWriter(session)
                for market in markets:
                    self._lock_market(writer, market)
                # every account the batch's own orders need, in ONE ascending lock: the fee
                # accounts and both accounts of each ordering member (what a maker's fill
                # needs is locked when the fill happens)
                wanted: list[int] = []
                for market in markets:
                    spec = self.markets[market]
                    wanted += (self._fee_account_id(writer, spec.base),
                               self._fee_account_id(writer, spec.quote))  # fmt: skip
                known: dict[int, bool] = {}
                for command in commands:
                    spec = self.markets[command.market]
                    try:
                        for asset in (spec.base, spec.quote):
                            found = self._account_id(writer, command.member_id, asset)
                            if found is not None:
                                wanted.append(found)
                        known[command.member_id] = True
                    except UnknownAccountError:
                        known[command.member_id] = False
                writer.lock_accounts(wanted)
                writer.allocate(len(commands))
                results: list[PlaceResult | Exception] = []
                for command in commands:
                    if known[command.member_id]:
                        results.append(self._place(writer, command))
                    else:
                        results.append(UnknownAccountError(f"no member {command.member_id}"))
                for market in markets:
                    writer.set_next_seq(market, self.books[market].next_seq)
                writer.flush()
            return results
        except BaseException:
            for market in markets:
                self.books[market] = self.load_book(market)
            raise

    def _lock_market(self, writer: TradeWriter, market: str) -> None:
        book = self.books[market]
        stored = writer.market_seq(market)
        if stored is None:
            writer.set_next_seq(market, book.next_seq, new=True)
        elif stored != book.next_seq:
            # another writer moved the market on: continue from what is stored
            self.books[market] = book_from_db(writer.session, self.markets[market], stored)

    def _place(self, writer: TradeWriter, command: OrderCommand) -> PlaceResult:
        spec = self.markets[command.market]
        book = self.books[command.market]
        side = command.side
        asset, amount = hold_amount(spec, side, command.price, command.quantity)
        account_id = self._account_id(writer, command.member_id, asset)
        order = writer.new_order(
            command.market, command.member_id, side.value, command.order_type.value,
            command.tif.value, command.price, command.quantity,
        )  # fmt: skip
        req = OrderRequest(
            order.id, command.member_id, side, command.price, command.quantity,
            command.order_type, command.tif,
        )  # fmt: skip
        if book.validate(req) is not None:
            events = book.place(req)  # the engine reports why; nothing to reserve
        else:
            if account_id is None:
                raise UnknownAccountError(f"member {command.member_id} has no {asset} account")
            try:
                hold = writer.reserve(
                    writer.account(account_id),
                    amount,
                    f"order {order.id} on {spec.symbol}",
                    f"order:{order.id}",
                )
            except InsufficientFundsError:
                events = book.reject(order.id, RejectReason.INSUFFICIENT_FUNDS)
            except MemberFrozenError:
                events = book.reject(order.id, RejectReason.MEMBER_FROZEN)
            else:
                order.hold_id = hold.id
                events = book.place(req)
        self._apply(writer, spec, events)
        return PlaceResult(order.id, order.status, events, order.reject_reason)

    def _apply(self, writer: TradeWriter, spec: MarketSpec, events: list[Event]) -> None:
        # read every stored order the events name, and lock every account they move, at once
        writer.load_orders(
            e.order_id if not isinstance(e, Fill) else e.maker_order_id
            for e in events
            if not isinstance(e, Accepted)
        )
        accounts = [
            self._account_id(writer, member, asset)
            for e in events
            if isinstance(e, Fill)
            for member in (e.maker_member_id, e.taker_member_id)
            for asset in (spec.base, spec.quote)
        ]
        named = (writer.orders.get(e.order_id) for e in events if isinstance(e, Cancelled))
        writer.lock_accounts(
            [a for a in accounts if a is not None]
            + [
                writer.holds[o.hold_id].account_id
                for o in named
                if o is not None and o.hold_id is not None and o.hold_id in writer.holds
            ]
        )
        orders = writer.orders
        for event in events:
            if isinstance(event, Accepted):
                taker = orders[event.order_id]
                taker.status, taker.priority, taker.remaining = OPEN, event.seq, event.quantity
            elif isinstance(event, Fill):
                self._post_fill(writer, spec, event, orders[event.buy_order_id],
                                orders[event.sell_order_id])  # fmt: skip
            elif isinstance(event, Cancelled):
                order = orders[event.order_id]
                order.remaining = 0
                order.dirty = True
                self._release(writer, order)
            elif isinstance(event, Done):
                order = orders[event.order_id]
                order.status = FILLED if event.reason == "filled" else CANCELLED
                order.dirty = True
            elif isinstance(event, Rejected):
                order = orders[event.order_id]
                order.status, order.reject_reason, order.remaining = REJECTED, event.reason, 0
                order.dirty = True
                self._release(writer, order)

    def _release(self, writer: TradeWriter, order: OrderRow) -> None:
        if order.hold_id is None:
            return
        hold = writer.holds.get(order.hold_id)
        if hold is not None and hold.is_open and hold.remaining:
            writer.release(hold)

    def _account_id(self, writer: TradeWriter, member_id: int, asset: str) -> int | None:
        """The member's account id in ``asset`` (None: the member has no such account);
        UnknownAccountError when there is no such member."""
        key = (member_id, asset)
        found = self._member_accounts.get(key)
        if found is not None:
            return found
        rows = writer.conn.execute(
            select(Account.id, Account.asset).where(Account.member_id == member_id)
        ).all()
        for account_id, account_asset in rows:
            self._member_accounts[(member_id, account_asset)] = int(account_id)
        found = self._member_accounts.get(key)
        if found is None and writer.session.get(Member, member_id) is None:
            raise UnknownAccountError(f"no member {member_id}")
        return found

    def _fee_account_id(self, writer: TradeWriter, asset: str) -> int:
        found = self._fee_accounts.get(asset)
        if found is None:
            found = writer.conn.execute(
                select(Account.id).where(Account.system_name == FEES, Account.asset == asset)
            ).scalar()
            if found is None:
                raise UnknownAccountError(f"no system account {FEES} in {asset}")
            self._fee_accounts[asset] = found = int(found)
        return found

    def _post_fill(
        self, writer: TradeWriter, spec: MarketSpec, fill: Fill, buy: OrderRow, sell: OrderRow
    ) -> None:
        assert buy.hold_id is not None and sell.hold_id is not None
        quote, base = spec.quote, spec.base

        def account(member: int, asset: str) -> int:
            found = self._account_id(writer, member, asset)
            if found is None:
                raise UnknownAccountError(f"member {member} has no {asset} account")
            return found

        legs = [
            Leg(account(buy.member_id, quote), -fill.quote_amount, buy.hold_id),
            Leg(account(sell.member_id, quote), fill.quote_amount - fill.seller_fee),
            Leg(self._fee_account_id(writer, quote), fill.seller_fee),
            Leg(account(sell.member_id, base), -fill.base_amount, sell.hold_id),
            Leg(account(buy.member_id, base), fill.base_amount - fill.buyer_fee),
            Leg(self._fee_account_id(writer, base), fill.buyer_fee),
        ]
        trade = {
            "market": spec.symbol, "seq": fill.seq, "maker_order_id": fill.maker_order_id,
            "taker_order_id": fill.taker_order_id, "buyer_id": buy.member_id,
            "seller_id": sell.member_id, "taker_side": fill.taker_side.value,
            "price": fill.price, "quantity": fill.quantity, "base_amount": fill.base_amount,
            "quote_amount": fill.quote_amount, "buyer_fee": fill.buyer_fee,
            "seller_fee": fill.seller_fee,
        }  # fmt: skip
        writer.post(
            "trade",
            f"{spec.symbol} fill {fill.quantity} lots at {fill.price}: "
            f"order {buy.id} buys from order {sell.id}",
            [leg for leg in legs if leg.amount],
            reference=f"trade:{spec.symbol}:{fill.seq}",
            actor="matching",
            trade=trade,
        )
        # a buy filled below its limit keeps only what its remaining lots can still cost
        excess = (buy.price - fill.price) * fill.quantity
        if excess:
            writer.release(writer.holds[buy.hold_id], excess)
        buy.remaining -= fill.quantity
        sell.remaining -= fill.quantity
        buy.dirty = sell.dirty = True


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
