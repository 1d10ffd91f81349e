"""Rate limits on the money and login routes."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from scnode_exchange.api.app import create_app
from scnode_exchange.api.ratelimit import RateLimiter
from tests.unit.apps.exchange.api.node import Node, make_settings


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2, burst=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("a")
    with pytest.raises(HTTPException) as refused:
        limiter.check("a")
    assert refused.value.status_code == 429 and refused.value.headers == {"Retry-After": "1"}
    limiter.check("b")  # another caller has its own bucket
    now[0] = 0.5  # one token back after 1/rate seconds
    limiter.check("a")
    with pytest.raises(HTTPException):
        limiter.check("a")


def test_order_and_login_routes_are_limited(sqlite_url: str, tmp_path: Path) -> None:
    settings, key = make_settings(
        tmp_path, sqlite_url, orders_per_second=0.01, orders_burst=3, logins_per_minute=2
    )
    with TestClient(create_app(settings)) as client:
        node = Node(client, key, settings)
        _, alice = node.member("alice", sats=100_000)
        _, bob = node.member("bob", sats=100_000)
        order = {"side": "buy", "price": 100, "quantity": 1}
        codes = [
            client.post("/api/orders", headers=alice, json=order).status_code for _ in range(4)
        ]
        assert codes == [201, 201, 201, 429]
        assert client.delete("/api/orders/1", headers=alice).status_code == 429
        assert client.post("/api/orders", headers=bob, json=order).status_code == 201
        logins = [
            client.post("/api/auth/login", json={"username": "alice"}).status_code for _ in range(3)
        ]
        assert logins == [200, 200, 429]
