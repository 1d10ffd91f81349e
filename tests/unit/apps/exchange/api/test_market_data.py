"""Market data: candles and ticker from known trades, and the WebSocket streams (snapshot,
then updates whose sequence numbers chain, so a client can detect a gap)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update

from scnode_exchange.marketdata import MarketFeed, aggregate_candles
from scnode_exchange.trading.models import Trade
from tests.unit.apps.exchange.api.node import LOT, Node


def _trade(node: Node, seller: dict[str, str], buyer: dict[str, str], price: int, qty: int) -> None:
    for headers, side in ((seller, "sell"), (buyer, "buy")):
        reply = node.client.post(
            "/api/orders", headers=headers, json={"side": side, "price": price, "quantity": qty}
        )
        assert reply.status_code == 201, reply.text
    assert reply.json()["status"] == "filled"


def test_aggregate_candles_by_hand() -> None:
    rows = [(0.0, 10, 1, 10), (59.9, 12, 2, 24), (60.0, 8, 1, 8), (400.0, 9, 5, 45)]
    assert [c.to_json() for c in aggregate_candles(rows, 60)] == [
        {
            "time": 0,
            "open": 10,
            "high": 12,
            "low": 10,
            "close": 12,
            "volume": 3,
            "quote_volume": 34,
            "trades": 2,
        },
        {
            "time": 60,
            "open": 8,
            "high": 8,
            "low": 8,
            "close": 8,
            "volume": 1,
            "quote_volume": 8,
            "trades": 1,
        },
        {
            "time": 360,
            "open": 9,
            "high": 9,
            "low": 9,
            "close": 9,
            "volume": 5,
            "quote_volume": 45,
            "trades": 1,
        },
    ]


def test_candles_and_ticker_from_known_trades(node: Node) -> None:
    _, seller = node.member("seller", azc=100 * LOT)
    _, buyer = node.member("buyer", sats=10**7)
    # (price, lots, seconds after the start of the previous hour); the first is two days old
    base = (int(time.time()) // 3600 - 1) * 3600
    known = [(500, 1, -2 * 86_400), (1000, 1, 10), (1100, 2, 50), (900, 3, 70), (1050, 4, 400)]
    for price, qty, _ in known:
        _trade(node, seller, buyer, price, qty)
    rt = node.client.app.state.runtime  # type: ignore[attr-defined]
    with rt.sessions.begin() as session:
        seqs = list(
            session.scalars(
                Trade.__table__.select().with_only_columns(Trade.seq).order_by(Trade.seq)
            )
        )
        assert len(seqs) == len(known)
        for seq, (_, _, offset) in zip(seqs, known, strict=True):
            at = datetime.fromtimestamp(base + offset, UTC)
            session.execute(update(Trade).where(Trade.seq == seq).values(created_at=at))

    def get(interval: str, limit: int) -> list[dict[str, Any]]:
        reply = node.client.get(f"/api/candles?interval={interval}&limit={limit}")
        assert reply.status_code == 200, reply.text
        result: list[dict[str, Any]] = reply.json()
        return result

    def ohlcv(c: dict[str, Any]) -> tuple[int, ...]:
        return (
            c["time"] - base,
            c["open"],
            c["high"],
            c["low"],
            c["close"],
            c["volume"],
            c["quote_volume"],
            c["trades"],
        )

    assert [ohlcv(c) for c in get("1m", 200)] == [
        (0, 1000, 1100, 1000, 1100, 3, 3200, 2),
        (60, 900, 900, 900, 900, 3, 2700, 1),
        (360, 1050, 1050, 1050, 1050, 4, 4200, 1),
    ]
    assert [ohlcv(c) for c in get("5m", 100)] == [
        (0, 1000, 1100, 900, 900, 6, 5900, 3),
        (300, 1050, 1050, 1050, 1050, 4, 4200, 1),
    ]
    assert [ohlcv(c)[1:] for c in get("1h", 48)] == [(1000, 1100, 900, 1050, 10, 10100, 4)]
    days = get("1d", 7)
    assert (days[0]["open"], days[0]["volume"]) == (500, 1)
    assert sum(c["trades"] for c in days) == 5
    assert node.client.get("/api/candles?interval=2m").status_code == 422
    assert node.client.get("/api/candles?market=BTC/EUR").status_code == 404

    ticker = node.client.get("/api/ticker").json()
    assert {
        k: ticker[k]
        for k in ("open", "high", "low", "last", "change", "volume", "quote_volume", "trades")
    } == {
        "open": 1000,
        "high": 1100,
        "low": 900,
        "last": 1050,
        "change": 50,
        "volume": 10,
        "quote_volume": 10100,
        "trades": 4,
    }


def test_ws_streams_snapshot_then_chained_updates(node: Node) -> None:
    client = node.client
    _, seller = node.member("seller", azc=100 * LOT)
    _, buyer = node.member("buyer", sats=10**7)
    client.post("/api/orders", headers=seller, json={"side": "sell", "price": 1500, "quantity": 2})
    with (
        client.websocket_connect("/ws/orders") as depth_ws,
        client.websocket_connect("/ws/trades") as trades_ws,
        client.websocket_connect("/ws/candles?interval=1m") as candles_ws,
    ):
        depth = depth_ws.receive_json()
        assert depth["type"] == "snapshot" and depth["asks"] == [[1500, 2]] and depth["bids"] == []
        snapshot_trades = trades_ws.receive_json()
        assert snapshot_trades["type"] == "snapshot" and snapshot_trades["trades"] == []
        assert candles_ws.receive_json()["candles"] == []
        last = depth["seq"]

        client.post(
            "/api/orders", headers=seller, json={"side": "sell", "price": 1400, "quantity": 1}
        )
        client.post(
            "/api/orders", headers=buyer, json={"side": "buy", "price": 1000, "quantity": 3}
        )
        client.post(
            "/api/orders", headers=buyer, json={"side": "buy", "price": 1500, "quantity": 2}
        )
        updates = [depth_ws.receive_json() for _ in range(3)]
        assert [(u["asks"], u["bids"]) for u in updates] == [
            ([[1400, 1]], []),
            ([], [[1000, 3]]),
            ([[1400, 0], [1500, 1]], []),  # 1 lot at 1400 and 1 at 1500 traded
        ]
        for message in updates:
            assert message["type"] == "update"
            assert message["prev_seq"] <= last < message["seq"]  # no gap, strictly increasing
            last = message["seq"]

        trade_update = trades_ws.receive_json()
        assert [(t["price"], t["quantity"]) for t in trade_update["trades"]] == [
            (1400, 1),
            (1500, 1),
        ]
        assert trade_update["seq"] == last and trade_update["prev_seq"] <= snapshot_trades["seq"]
        fill_seqs = [t["seq"] for t in trade_update["trades"]]
        assert fill_seqs == sorted(fill_seqs) and fill_seqs[-1] <= last
        candle = candles_ws.receive_json()["candles"][-1]
        assert (candle["open"], candle["close"], candle["volume"]) == (1400, 1500, 2)

        # the REST depth agrees with the stream's state
        assert client.get("/api/orders").json() == {
            "market": "AZC/SATS",
            "seq": last,
            "bids": [[1000, 3]],
            "asks": [[1500, 1]],
        }

    with client.websocket_connect("/ws/market_stats") as stats_ws:
        assert stats_ws.receive_json()["last"] == 1500
        pushed = stats_ws.receive_json()  # sent by the periodic publisher
        assert pushed["type"] == "stats" and pushed["volume"] == 2 and pushed["best_bid"] == 1000


def test_slow_subscriber_is_told_to_resync() -> None:
    async def scenario() -> list[dict[str, Any]]:
        feed = MarketFeed()
        fast = feed.subscribe("orders", "AZC/SATS")
        slow = feed.subscribe("orders", "AZC/SATS")
        got = []
        for seq in range(1, 1100):
            feed.publish("orders", "AZC/SATS", seq, {"type": "update"})
            if seq < 1099:
                got.append(await fast.queue.get())
        assert slow.overflowed and not feed.has_subscribers("orders", "MICRO/SATS")
        assert [m["prev_seq"] for m in got[:3]] == [0, 1, 2]
        return [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]

    backlog = asyncio.run(scenario())
    assert [m["type"] for m in backlog] == ["resync"]
