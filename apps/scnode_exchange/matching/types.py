"""Orders, markets and events of the matching engine.

Units (all integers, so no rounding ever creates or destroys value):

* ``quantity`` is a number of **lots**; one lot is ``MarketSpec.lot_size`` base units (azsat
  for AZC, the microcurrency's smallest unit). base amount = quantity * lot_size.
* ``price`` is **quote units (sats) per lot** and a multiple of ``MarketSpec.tick``.
  quote amount of a fill = price * quantity, exactly.
* Fees are charged in basis points (1/10,000) on what each side *receives*: the buyer's fee in
  base units out of the base amount, the seller's fee in sats out of the quote amount,
  ``fee = ceil(amount * bps / 10,000)`` — rounded in the exchange's favour, never below zero,
  never more than the amount (bps ≤ 10,000). Fees never need reserving.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Side(StrEnum):
    """Which way an order trades the base asset."""

    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    """Limit orders name a price; market orders name a protection (worst) price."""

    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(StrEnum):
    """GTC rests its remainder; IOC cancels it; POST_ONLY is refused if it would trade at once."""

    GTC = "gtc"
    IOC = "ioc"
    POST_ONLY = "post_only"


class RejectReason(StrEnum):
    """Why the engine refused an order or a cancel."""

    INVALID_QUANTITY = "invalid_quantity"
    INVALID_PRICE = "invalid_price"
    WOULD_TAKE = "post_only_would_take"
    DUPLICATE_ORDER = "duplicate_order_id"
    UNKNOWN_ORDER = "unknown_order"
    INVALID_ORDER = "invalid_order"
    # decided outside the engine (the ledger), reported through it so the sequence stays whole
    INSUFFICIENT_FUNDS = "insufficient_funds"
    MEMBER_FROZEN = "member_frozen"


class CancelReason(StrEnum):
    """Why an order (or its remainder) left the book without trading."""

    REQUESTED = "requested"
    IOC_REMAINDER = "ioc_remainder"
    SELF_TRADE = "self_trade_prevention"


BIGINT_MAX = 2**63 - 1


def ceil_fee(amount: int, bps: int) -> int:
    """The fee on ``amount`` at ``bps`` basis points, rounded up (exchange's favour)."""
    return -((-amount * bps) // 10_000)


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """One market: ``base``/``quote`` assets, lot and tick sizes, fees in basis points."""

    symbol: str
    base: str
    quote: str
    lot_size: int
    tick: int
    maker_fee_bps: int = 0
    taker_fee_bps: int = 0
    max_quantity: int = 10**9
    max_price: int = 10**9

    def __post_init__(self) -> None:
        for name in ("lot_size", "tick"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"{name} must be a positive integer")
        # every amount must fit the database's BIGINT, whatever order passes validation
        if self.max_price * self.max_quantity > BIGINT_MAX or (
            self.max_quantity * self.lot_size > BIGINT_MAX
        ):
            raise ValueError("max_price/max_quantity/lot_size allow amounts beyond BIGINT")
        for name in ("maker_fee_bps", "taker_fee_bps"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= 10_000:
                raise ValueError(f"{name} must be an integer in 0..10000")

    def quote_amount(self, price: int, quantity: int) -> int:
        """Sats paid for ``quantity`` lots at ``price`` sats per lot."""
        return price * quantity

    def base_amount(self, quantity: int) -> int:
        """Base units in ``quantity`` lots."""
        return quantity * self.lot_size


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order as submitted; ``price`` is the limit (or, for market orders, the protection)."""

    order_id: int
    member_id: int
    side: Side
    price: int
    quantity: int
    type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.GTC


@dataclass(slots=True)
class RestingOrder:
    """An order on the book; ``priority`` (the sequence number of its acceptance) orders time."""

    order_id: int
    member_id: int
    side: Side
    price: int
    remaining: int
    priority: int


@dataclass(frozen=True, slots=True)
class Accepted:
    """The order passed validation and takes part in matching."""

    seq: int
    order_id: int
    member_id: int
    side: Side
    price: int
    quantity: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """The order (or cancel) was refused; nothing changed."""

    seq: int
    order_id: int
    reason: RejectReason


@dataclass(frozen=True, slots=True)
class Fill:
    """A trade between a resting (maker) and an incoming (taker) order at the maker's price."""

    seq: int
    maker_order_id: int
    taker_order_id: int
    maker_member_id: int
    taker_member_id: int
    taker_side: Side
    price: int
    quantity: int
    base_amount: int
    quote_amount: int
    buyer_fee: int
    seller_fee: int

    @property
    def buy_order_id(self) -> int:
        """Order id of the buying side."""
        return self.taker_order_id if self.taker_side is Side.BUY else self.maker_order_id

    @property
    def sell_order_id(self) -> int:
        """Order id of the selling side."""
        return self.maker_order_id if self.taker_side is Side.BUY else self.taker_order_id


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The order's ``remaining`` lots left the book without trading."""

    seq: int
    order_id: int
    remaining: int
    reason: CancelReason


@dataclass(frozen=True, slots=True)
class Done:
    """The order is finished (``filled`` or ``cancelled``) and off the book for good."""

    seq: int
    order_id: int
    reason: str


Event = Accepted | Rejected | Fill | Cancelled | Done
