"""Login and money endpoints are rate limited — the limit *observed*: requests are sent as fast
as the client goes and the number that got through before the first 429 is counted and compared
with the setting. Each limit is per caller, so another member (or address) is not slowed.

In-process apps (TestClient): the limiters live in the app, so a process adds nothing but time.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from scnode_exchange.api.app import create_app
from scnode_exchange.settings import ChainSettings
from tests.unit.apps.dashboard.conftest import Dash, make_dash
from tests.unit.apps.exchange.api.node import Node, make_settings


def observed_limit(send: Callable[[], httpx.Response], ceiling: int = 500) -> tuple[int, float]:
    """How many requests got through before the first 429, and in how many seconds."""
    started = time.monotonic()
    for passed in range(ceiling):
        reply = send()
        if reply.status_code == 429:
            return passed, time.monotonic() - started
        # 503: no chain or Lightning API behind the in-process exchange
        assert reply.status_code < 500 or reply.status_code == 503, reply.text
    raise AssertionError(f"no 429 after {ceiling} requests: no limit")


def assert_limit(observed: tuple[int, float], burst: int, per_minute: float) -> int:
    """A token bucket lets ``burst`` through at once plus what refilled while we sent."""
    passed, seconds = observed
    assert burst <= passed <= burst + seconds * per_minute / 60 + 1, (passed, seconds, burst)
    return passed


def _exchange(tmp_path: Path, **overrides: object) -> Iterator[Node]:
    settings, owner_key = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'x.sqlite3'}",
        chains={"bitcoin": ChainSettings(asset="SATS", api_url="http://127.0.0.1:9",
                                         api_key=SecretStr("unused-" + secrets.token_hex(8)))},
        withdrawals={"bitcoin": {"hrp": "bcrt", "min_amount": 1_000, "flat_fee": 300}},
        withdrawal_poll_seconds=600,
        **overrides,
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        yield Node(client, owner_key, settings)


@pytest.fixture
def exchange(tmp_path: Path) -> Iterator[Node]:
    yield from _exchange(tmp_path)  # the default limits


def test_lab_login_limit_is_the_setting(exchange: Node) -> None:
    exchange.member("alice")
    observed = observed_limit(
        lambda: exchange.client.post("/api/auth/login", json={"username": "alice"})
    )
    assert exchange.settings.logins_per_minute == 10
    limit = assert_limit(observed, 10, 10)
    print(f"observed: lab login {limit} per client address, then 429")


def test_money_requests_limit_is_the_setting_per_member(exchange: Node) -> None:
    """Withdrawals, Lightning invoices and deposit addresses share one bucket per member;
    refusals for bad input count too (a flood is a flood)."""
    _, alice = exchange.member("alice", sats=10**6)
    _, bob = exchange.member("bob", sats=10**6)
    routes = ["/v1/withdrawals", "/v1/lightning/invoices", "/v1/deposits/address"]
    sent = [0]

    def send() -> httpx.Response:
        sent[0] += 1
        path = routes[sent[0] % len(routes)]
        reply: httpx.Response = exchange.client.post(path, json={}, headers=alice)
        return reply

    assert exchange.settings.money_requests_per_minute == 30
    limit = assert_limit(observed_limit(send), 30, 30)
    # another member is not slowed, and reading is not limited
    assert exchange.client.post("/v1/withdrawals", json={}, headers=bob).status_code == 422
    assert exchange.client.get("/v1/withdrawals", headers=alice).status_code == 200
    print(f"observed: money requests {limit} per member, then 429")


def test_money_limit_is_configurable(tmp_path: Path) -> None:
    for node in _exchange(tmp_path, money_requests_per_minute=5):
        _, alice = node.member("alice")
        withdraw = partial(node.client.post, "/v1/withdrawals", json={}, headers=alice)
        assert_limit(observed_limit(withdraw), 5, 5)


def test_order_limit_is_the_setting(tmp_path: Path) -> None:
    """Orders: ``orders_burst`` at once, then ``orders_per_second`` (set low here so the refill
    does not blur the count; the default is a burst of 200 at 50 a second)."""
    for node in _exchange(tmp_path, orders_burst=25, orders_per_second=0.01):
        _, alice = node.member("alice", sats=10**9)
        order = {"market": "AZC/SATS", "side": "buy", "type": "limit", "price": 10, "quantity": 1}
        place = partial(node.client.post, "/api/orders", json=order, headers=alice)
        limit = assert_limit(observed_limit(place), 25, 0.6)
        print(f"observed: orders {limit} at once (orders_burst=25), then 429")


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Dash]:
    yield from make_dash(tmp_path)


def test_dashboard_sign_in_limit_is_the_setting(dash: Dash) -> None:
    """Wrong passwords for one account from one address: after ``max_failures`` the account
    locks (423, which costs no password hash, so the attempts come fast) and the address's
    sign-in limiter still counts every attempt: 429 after ``logins_per_minute``."""

    def send() -> httpx.Response:
        # a fresh form each time: a lock-out ends the session and with it the CSRF token
        page = dash.client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, page.text[:300]
        reply: httpx.Response = dash.client.post(
            "/login/local",
            data={"username": "alice", "password": "wrong-password",
                  "csrf_token": token.group(1)},
            follow_redirects=False,
        )  # fmt: skip
        assert reply.status_code in {401, 423, 429}, reply.status_code
        return reply

    assert dash.settings.logins_per_minute == 20
    limit = assert_limit(observed_limit(send), 20, 20)
    print(f"observed: dashboard sign-in {limit} per address, then 429")


def test_dashboard_refuses_a_change_without_the_csrf_token(dash: Dash) -> None:
    """Observed, not only declared: signed in, every state-changing route without the token
    is refused with 403 (and the session still works after)."""
    from fastapi.routing import APIRoute

    dash.sign_in_local("alice")
    changing = [
        r.path for r in dash.client.app.routes  # type: ignore[attr-defined]
        if isinstance(r, APIRoute) and set(r.methods or ()) - {"GET", "HEAD"}
        and "{" not in r.path
    ]  # fmt: skip
    assert "/logout" in changing and "/wallet/withdraw" in changing
    for path in changing:
        reply = dash.client.post(path, data={}, follow_redirects=False)
        assert reply.status_code == 403, (path, reply.status_code)
    assert dash.client.get("/wallet", follow_redirects=False).status_code == 200
