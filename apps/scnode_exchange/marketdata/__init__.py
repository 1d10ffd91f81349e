"""Market data: depth, recent trades, OHLCV candles, 24 h ticker, and the live feed."""

from scnode_exchange.marketdata.feed import MarketFeed, Subscription
from scnode_exchange.marketdata.queries import (
    INTERVALS,
    Candle,
    aggregate_candles,
    candles,
    depth,
    depth_changes,
    public_trade,
    recent_trades,
    ticker,
    trades_between,
)

__all__ = [
    "INTERVALS",
    "Candle",
    "MarketFeed",
    "Subscription",
    "aggregate_candles",
    "candles",
    "depth",
    "depth_changes",
    "public_trade",
    "recent_trades",
    "ticker",
    "trades_between",
]
