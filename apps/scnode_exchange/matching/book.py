"""The order book of one market: price-time priority matching, in memory, no I/O.

Every call returns the events it caused, each with the market's next sequence number, so a
caller that applies events in ``seq`` order (the ledger glue, market-data streams) sees exactly
what the book did. The book is deterministic: the same calls give the same events and book.

Self-trade prevention: when an incoming order would trade with a resting order of the same
member, the **resting** order is cancelled (``Cancelled(reason=self_trade_prevention)``) and
matching continues with the next order — the newest instruction is the member's current intent.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable

from scnode_exchange.matching.types import (
    Accepted,
    Cancelled,
    CancelReason,
    Done,
    Event,
    Fill,
    MarketSpec,
    OrderRequest,
    OrderType,
    Rejected,
    RejectReason,
    RestingOrder,
    Side,
    TimeInForce,
    ceil_fee,
)

Level = dict[int, RestingOrder]  # insertion order = time priority within one price
BookSnapshot = tuple[
    tuple[tuple[int, tuple[tuple[int, int, int, int], ...]], ...],
    tuple[tuple[int, tuple[tuple[int, int, int, int], ...]], ...],
]


class OrderBook:
    """Bids and asks of one market.

    Price levels are kept in two sorted key lists whose *last* element is the best price: bids
    by ``price``, asks by ``-price``. So the best level is always ``keys[-1]`` on either side.
    """

    def __init__(self, spec: MarketSpec, next_seq: int = 1) -> None:
        self.spec = spec
        self.next_seq = next_seq
        self._levels: dict[Side, dict[int, Level]] = {Side.BUY: {}, Side.SELL: {}}
        self._keys: dict[Side, list[int]] = {Side.BUY: [], Side.SELL: []}
        self._orders: dict[int, RestingOrder] = {}

    # --- queries ----------------------------------------------------------------------------

    def __contains__(self, order_id: int) -> bool:
        return order_id in self._orders

    def __len__(self) -> int:
        return len(self._orders)

    def get(self, order_id: int) -> RestingOrder | None:
        """The resting order with this id, if it is on the book."""
        return self._orders.get(order_id)

    def best_bid(self) -> int | None:
        """Highest bid price, or None."""
        keys = self._keys[Side.BUY]
        return keys[-1] if keys else None

    def best_ask(self) -> int | None:
        """Lowest ask price, or None."""
        keys = self._keys[Side.SELL]
        return -keys[-1] if keys else None

    def depth(self, side: Side, levels: int = 50) -> list[tuple[int, int]]:
        """``[(price, total lots)]`` of the best ``levels`` price levels of ``side``."""
        keys = self._keys[side]
        sign = 1 if side is Side.BUY else -1
        out = []
        for key in reversed(keys[-levels:] if levels else []):
            price = sign * key
            out.append((price, sum(o.remaining for o in self._levels[side][price].values())))
        return out

    def open_orders(self) -> list[RestingOrder]:
        """Copies of every resting order, by priority."""
        return sorted(
            (
                RestingOrder(o.order_id, o.member_id, o.side, o.price, o.remaining, o.priority)
                for o in self._orders.values()
            ),
            key=lambda o: o.priority,
        )

    def snapshot(self) -> BookSnapshot:
        """The whole book, best price first, orders in time priority: equal snapshots mean
        equal books (used to check a rebuilt book against the live one)."""

        def side(s: Side) -> tuple[tuple[int, tuple[tuple[int, int, int, int], ...]], ...]:
            sign = 1 if s is Side.BUY else -1
            return tuple(
                (
                    sign * key,
                    tuple(
                        (o.order_id, o.member_id, o.remaining, o.priority)
                        for o in self._levels[s][sign * key].values()
                    ),
                )
                for key in reversed(self._keys[s])
            )

        return side(Side.BUY), side(Side.SELL)

    # --- commands ---------------------------------------------------------------------------

    def _seq(self) -> int:
        seq = self.next_seq
        self.next_seq = seq + 1
        return seq

    def validate(self, req: OrderRequest) -> RejectReason | None:
        """Why ``place`` would refuse ``req`` before matching (None: it would not)."""
        spec = self.spec
        if req.order_id in self._orders:
            return RejectReason.DUPLICATE_ORDER
        if type(req.quantity) is not int or not 0 < req.quantity <= spec.max_quantity:
            return RejectReason.INVALID_QUANTITY
        if (
            type(req.price) is not int
            or not 0 < req.price <= spec.max_price
            or req.price % spec.tick
        ):
            return RejectReason.INVALID_PRICE
        if req.type is OrderType.MARKET and req.tif is TimeInForce.POST_ONLY:
            return RejectReason.INVALID_ORDER
        return None

    def place(self, req: OrderRequest) -> list[Event]:
        """Validate, match and (GTC remainder) rest one order; returns the events in order."""
        reason = self.validate(req)
        if reason is not None:
            return [Rejected(self._seq(), req.order_id, reason)]
        buy = req.side is Side.BUY
        opposite = Side.SELL if buy else Side.BUY
        keys = self._keys[opposite]
        # a resting level crosses when its key >= threshold (asks' keys are -price)
        threshold = -req.price if buy else req.price
        if req.tif is TimeInForce.POST_ONLY and keys and keys[-1] >= threshold:
            return [Rejected(self._seq(), req.order_id, RejectReason.WOULD_TAKE)]

        accepted_seq = self._seq()
        events: list[Event] = [
            Accepted(accepted_seq, req.order_id, req.member_id, req.side, req.price, req.quantity)
        ]
        spec = self.spec
        levels = self._levels[opposite]
        orders = self._orders
        remaining = req.quantity
        maker_bps, taker_bps = spec.maker_fee_bps, spec.taker_fee_bps
        while remaining and keys and keys[-1] >= threshold:
            price = keys[-1] if not buy else -keys[-1]
            level = levels[price]
            while remaining and level:
                maker = next(iter(level.values()))
                if maker.member_id == req.member_id:
                    del level[maker.order_id]
                    del orders[maker.order_id]
                    events.append(
                        Cancelled(
                            self._seq(), maker.order_id, maker.remaining, CancelReason.SELF_TRADE
                        )
                    )
                    events.append(Done(self._seq(), maker.order_id, "cancelled"))
                    continue
                qty = maker.remaining if maker.remaining < remaining else remaining
                base = qty * spec.lot_size
                quote = price * qty
                events.append(
                    Fill(
                        self._seq(),
                        maker.order_id,
                        req.order_id,
                        maker.member_id,
                        req.member_id,
                        req.side,
                        price,
                        qty,
                        base,
                        quote,
                        ceil_fee(base, taker_bps if buy else maker_bps),
                        ceil_fee(quote, maker_bps if buy else taker_bps),
                    )
                )
                remaining -= qty
                maker.remaining -= qty
                if not maker.remaining:
                    del level[maker.order_id]
                    del orders[maker.order_id]
                    events.append(Done(self._seq(), maker.order_id, "filled"))
            if not level:
                del levels[price]
                keys.pop()

        if not remaining:
            events.append(Done(self._seq(), req.order_id, "filled"))
        elif req.tif is TimeInForce.IOC or req.type is OrderType.MARKET:
            events.append(
                Cancelled(self._seq(), req.order_id, remaining, CancelReason.IOC_REMAINDER)
            )
            events.append(Done(self._seq(), req.order_id, "cancelled"))
        else:
            self._rest(
                RestingOrder(
                    req.order_id, req.member_id, req.side, req.price, remaining, accepted_seq
                )
            )
        return events

    def _rest(self, order: RestingOrder) -> None:
        levels = self._levels[order.side]
        level = levels.get(order.price)
        if level is None:
            level = levels[order.price] = {}
            insort(self._keys[order.side], order.price if order.side is Side.BUY else -order.price)
        level[order.order_id] = order
        self._orders[order.order_id] = order

    def reject(self, order_id: int, reason: RejectReason) -> list[Event]:
        """Record a refusal decided by the caller (e.g. insufficient funds) in the sequence."""
        return [Rejected(self._seq(), order_id, reason)]

    def cancel(self, order_id: int, reason: CancelReason = CancelReason.REQUESTED) -> list[Event]:
        """Take a resting order off the book."""
        order = self._orders.pop(order_id, None)
        if order is None:
            return [Rejected(self._seq(), order_id, RejectReason.UNKNOWN_ORDER)]
        levels = self._levels[order.side]
        level = levels[order.price]
        del level[order_id]
        if not level:
            del levels[order.price]
            keys = self._keys[order.side]
            key = order.price if order.side is Side.BUY else -order.price
            del keys[bisect_left(keys, key)]
        return [
            Cancelled(self._seq(), order_id, order.remaining, reason),
            Done(self._seq(), order_id, "cancelled"),
        ]

    # --- restart ----------------------------------------------------------------------------

    @classmethod
    def rebuild(
        cls, spec: MarketSpec, orders: Iterable[RestingOrder], next_seq: int | None = None
    ) -> OrderBook:
        """The book holding exactly ``orders`` (as stored: remaining lots and priority), with
        sequence numbers continuing at ``next_seq`` (default: after the highest priority)."""
        ordered = sorted(orders, key=lambda o: o.priority)
        top = ordered[-1].priority if ordered else 0
        book = cls(spec, top + 1 if next_seq is None else next_seq)
        if book.next_seq <= top:
            raise ValueError("next_seq must be after every resting order's priority")
        for order in ordered:
            if order.order_id in book._orders:
                raise ValueError(f"order {order.order_id} twice")
            if order.remaining <= 0:
                raise ValueError(f"order {order.order_id} has nothing remaining")
            book._rest(
                RestingOrder(
                    order.order_id,
                    order.member_id,
                    order.side,
                    order.price,
                    order.remaining,
                    order.priority,
                )
            )
        return book
