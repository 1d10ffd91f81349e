"""Many members' orders arriving at once: they are group-committed (several per transaction),
the ledger and the order holds stay consistent, the book in memory equals the book rebuilt
from the database, and the depth stream's sequence numbers never go back or skip a message."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import httpx

from scnode_exchange.api.app import create_app
from scnode_exchange.ledger import verify
from scnode_exchange.trading.models import MarketState
from scnode_exchange.trading.service import book_from_db, verify_orders
from tests.unit.apps.exchange.api.node import LOT, MARKET, make_settings


def test_concurrent_orders_are_batched_and_consistent(exchange_db_url: str, tmp_path: Path) -> None:
    settings, owner_key = make_settings(tmp_path, exchange_db_url)
    app = create_app(settings)
    rng = random.Random(7)

    async def scenario() -> tuple[list[int], int]:
        async with app.router.lifespan_context(app):
            rt = app.state.runtime
            batch_sizes: list[int] = []
            place_orders = rt.exchange.place_orders

            def recording(commands: Any) -> Any:
                batch_sizes.append(len(commands))
                return place_orders(commands)

            rt.exchange.place_orders = recording
            sub = rt.feed.subscribe("orders", MARKET.symbol)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                owner = {"X-API-Key": owner_key}
                tokens = []
                for i in range(6):
                    made = await client.post(
                        "/api/owner/members",
                        headers=owner,
                        json={"handle": f"m{i}", "reason": "test"},
                    )
                    member_id = made.json()["id"]
                    for asset, amount in (("AZC", 1000 * LOT), ("SATS", 10**7)):
                        await client.post(
                            f"/api/owner/members/{member_id}/adjustments",
                            headers=owner,
                            json={
                                "asset": asset,
                                "amount": amount,
                                "reason": "test",
                                "idempotency_key": f"fund-{i}-{asset}",
                            },
                        )
                    tokens.append(app.state.session_tokens.issue(member_id))

                async def one(i: int) -> None:
                    body = {
                        "side": rng.choice(["buy", "sell"]),
                        "price": rng.randrange(90, 111) * 10,
                        "quantity": rng.randrange(1, 6),
                        "time_in_force": rng.choice(["gtc", "gtc", "ioc", "post_only"]),
                    }
                    reply = await client.post(
                        "/api/orders",
                        json=body,
                        headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"},
                    )
                    assert reply.status_code == 201, reply.text

                await asyncio.gather(*(one(i) for i in range(120)))
            seqs: list[int] = []
            while not sub.queue.empty():
                message = sub.queue.get_nowait()
                assert message["prev_seq"] == (seqs[-1] if seqs else 0)
                seqs.append(message["seq"])
            with rt.sessions() as session:
                assert verify(session).ok
                assert verify_orders(session, [MARKET.spec()]) == []
                state = session.get(MarketState, MARKET.symbol)
                assert state is not None
                rebuilt = book_from_db(session, MARKET.spec(), state.next_seq)
            assert rebuilt.snapshot() == rt.exchange.books[MARKET.symbol].snapshot()
            return batch_sizes, len(seqs)

    batch_sizes, messages = asyncio.run(scenario())
    assert sum(batch_sizes) == 120
    assert max(batch_sizes) > 1  # group commit really happened
    assert messages >= 1
