"""Market data read from the book (depth) and the ``trades`` table (trades, candles, ticker).

All prices are sats per lot and quantities lots (the README's units); candles are built from
the trades table, never stored, so they can never disagree with it. A bucket without trades
is left out (charting libraries draw the gap).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scnode_exchange.matching import OrderBook, Side
from scnode_exchange.trading.models import Trade

INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14_400, "1d": 86_400}
DAY = 86_400


def timestamp(value: datetime) -> float:
    """Seconds since the epoch; SQLite hands back naive datetimes, which are UTC here."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


@dataclass(slots=True)
class Candle:
    """OHLCV of one bucket: ``time`` is the bucket's start (Unix seconds)."""

    time: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote_volume: int
    trades: int

    def to_json(self) -> dict[str, int]:
        """The wire shape."""
        return asdict(self)


def aggregate_candles(rows: Iterable[tuple[float, int, int, int]], seconds: int) -> list[Candle]:
    """Buckets of ``seconds`` from ``(time, price, lots, quote amount)`` rows in trade order."""
    out: list[Candle] = []
    for at, price, quantity, quote in rows:
        start = int(at // seconds) * seconds
        if out and out[-1].time == start:
            candle = out[-1]
            candle.high = max(candle.high, price)
            candle.low = min(candle.low, price)
            candle.close = price
            candle.volume += quantity
            candle.quote_volume += quote
            candle.trades += 1
        else:
            out.append(Candle(start, price, price, price, price, quantity, quote, 1))
    return out


def _trade_rows(session: Session, market: str, since: float) -> list[tuple[float, int, int, int]]:
    query = (
        select(Trade.created_at, Trade.price, Trade.quantity, Trade.quote_amount)
        .where(Trade.market == market, Trade.created_at >= datetime.fromtimestamp(since, UTC))
        .order_by(Trade.seq)
    )
    return [(timestamp(at), p, q, v) for at, p, q, v in session.execute(query)]


def candles(
    session: Session, market: str, interval: str, limit: int, now: float | None = None
) -> list[Candle]:
    """The last ``limit`` buckets of ``interval`` (one of INTERVALS) up to ``now``, oldest
    first."""
    seconds = INTERVALS[interval]
    current = int((now if now is not None else datetime.now(UTC).timestamp()) // seconds)
    since = (current - limit + 1) * seconds
    return aggregate_candles(_trade_rows(session, market, since), seconds)


def ticker(session: Session, market: str, now: float | None = None) -> dict[str, Any]:
    """24 h statistics: open/high/low/last price, volume in lots and sats, trade count."""
    at = now if now is not None else datetime.now(UTC).timestamp()
    rows = [row for row in _trade_rows(session, market, at - DAY) if row[0] <= at]
    last_price = rows[-1][1] if rows else None
    if last_price is None:
        last_price = session.scalar(
            select(Trade.price).where(Trade.market == market).order_by(Trade.seq.desc()).limit(1)
        )
    open_price = rows[0][1] if rows else None
    return {
        "market": market,
        "open": open_price,
        "high": max((r[1] for r in rows), default=None),
        "low": min((r[1] for r in rows), default=None),
        "last": last_price,
        "change": last_price - open_price if open_price is not None and last_price else 0,
        "volume": sum(r[2] for r in rows),
        "quote_volume": sum(r[3] for r in rows),
        "trades": len(rows),
    }


def public_trade(trade: Trade) -> dict[str, Any]:
    """A trade as the public sees it: no member or order ids."""
    return {
        "seq": trade.seq,
        "time": timestamp(trade.created_at),
        "price": trade.price,
        "quantity": trade.quantity,
        "base_amount": trade.base_amount,
        "quote_amount": trade.quote_amount,
        "taker_side": trade.taker_side,
    }


def recent_trades(session: Session, market: str, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` trades of ``market``, newest first."""
    rows = session.scalars(
        select(Trade).where(Trade.market == market).order_by(Trade.seq.desc()).limit(limit)
    )
    return [public_trade(t) for t in rows]


def trades_between(
    session: Session, market: str, after_seq: int, upto_seq: int
) -> list[dict[str, Any]]:
    """Trades with ``after_seq < seq <= upto_seq``, in order (what one command produced)."""
    rows = session.scalars(
        select(Trade)
        .where(Trade.market == market, Trade.seq > after_seq, Trade.seq <= upto_seq)
        .order_by(Trade.seq)
    )
    return [public_trade(t) for t in rows]


def depth(book: OrderBook, levels: int = 50) -> dict[str, list[list[int]]]:
    """Aggregated ``[[price, lots], ...]`` per side, best first."""
    return {
        "bids": [[p, q] for p, q in book.depth(Side.BUY, levels)],
        "asks": [[p, q] for p, q in book.depth(Side.SELL, levels)],
    }


def depth_changes(
    before: dict[str, list[list[int]]], after: dict[str, list[list[int]]]
) -> dict[str, list[list[int]]]:
    """Levels that differ between two full depths; a removed level has quantity 0."""
    out: dict[str, list[list[int]]] = {}
    for side in ("bids", "asks"):
        old = {p: q for p, q in before[side]}
        new = {p: q for p, q in after[side]}
        changed = [
            [p, new.get(p, 0)] for p in sorted(old.keys() | new.keys()) if old.get(p) != new.get(p)
        ]
        out[side] = changed
    return out
