"""The matching engine: one in-memory, deterministic order book per market."""

from scnode_exchange.matching.book import BookSnapshot, OrderBook
from scnode_exchange.matching.types import (
    BIGINT_MAX,
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

__all__ = [
    "BIGINT_MAX",
    "Accepted",
    "BookSnapshot",
    "CancelReason",
    "Cancelled",
    "Done",
    "Event",
    "Fill",
    "MarketSpec",
    "OrderBook",
    "OrderRequest",
    "OrderType",
    "RejectReason",
    "Rejected",
    "RestingOrder",
    "Side",
    "TimeInForce",
    "ceil_fee",
]
