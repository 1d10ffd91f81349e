"""The dashboard in-process (TestClient) with a small member API in place of the exchange
(the browser tests use the real one) and, for OIDC, the real simnet provider on a loopback
port in a background thread."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from aiohttp import web
from argon2 import PasswordHasher
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient

from scnode_dashboard.app import create_app
from scnode_dashboard.exchange import ExchangeClient
from scnode_dashboard.oidc import OidcClient
from scnode_dashboard.settings import DashboardSettings
from scnode_dashboard.store import Store
from simnet.oidc.provider import Client, Provider, User, build_app
from simnet.pytest_chain import free_port

PASSWORD = "correct horse battery"
# the test users' hashes use a light argon2 profile (verification reads the profile from the
# hash), so the tests do not spend seconds in the production profile's 64 MiB rounds
LIGHT = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


def member_api(handles: set[str], withdrawals: list[dict[str, Any]] | None = None) -> FastAPI:
    """The exchange routes the dashboard calls, scoped by the bearer token like the real ones:
    order 1 belongs to alice, order 2 to bob; withdrawal requests are appended to
    ``withdrawals`` (with the member they were made for)."""
    api = FastAPI()
    sent = withdrawals if withdrawals is not None else []
    owners = {1: "alice", 2: "bob"}

    def who(authorization: str) -> str:
        return authorization.removeprefix("Bearer tok-")

    @api.post("/api/dashboard/sessions", status_code=201)
    def session(body: dict[str, str], x_api_key: str = "") -> dict[str, Any]:
        if body["handle"] not in handles:
            raise HTTPException(404, "no member with this handle")
        return {"token": f"tok-{body['handle']}", "member_id": 1, "frozen": False,
                "expires_at": 4_000_000_000}  # fmt: skip

    @api.get("/api/auth/me")
    def me(authorization: str = Header("")) -> dict[str, Any]:
        return {"username": who(authorization), "frozen": who(authorization) == "bob"}

    @api.get("/api/balances")
    def balances() -> list[dict[str, Any]]:
        return [{"asset": "SATS", "balance": 1500, "reserved": 500, "available": 1000}]

    @api.get("/api/history")
    def history() -> dict[str, Any]:
        return {"items": [], "next_before_id": None}

    @api.get("/v1/deposits/pending")
    def pending() -> dict[str, Any]:
        return {"deposits": []}

    @api.get("/v1/deposits/address")
    def address(chain: str) -> dict[str, Any]:
        return {"chain": chain, "asset": "SATS", "address": "bcrt1qexample", "new": False,
                "required_confirmations": 3}  # fmt: skip

    @api.get("/api/orders/{order_id}")
    def order(order_id: int, authorization: str = Header("")) -> dict[str, Any]:
        if owners.get(order_id) != who(authorization):
            raise HTTPException(404, "order not found")
        return {"id": order_id, "side": "buy", "status": "open"}

    @api.get("/v1/withdrawals/policy")
    def policy() -> dict[str, Any]:
        return {"chains": {"bitcoin": {"asset": "SATS", "fee": 300, "min_amount": 1000}}}

    @api.get("/v1/withdrawals")
    def mine(authorization: str = Header("")) -> dict[str, Any]:
        return {"withdrawals": [w for w in sent if w["member"] == who(authorization)]}

    @api.post("/v1/withdrawals", status_code=201)
    def withdraw(body: dict[str, Any], authorization: str = Header("")) -> dict[str, Any]:
        if body["amount"] < 1000:
            raise HTTPException(422, "below the minimum of 1000")
        made = {**body, "id": len(sent) + 1, "asset": "SATS", "state": "requested",
                "member": who(authorization), "txid": None}  # fmt: skip
        sent.append(made)
        return made

    return api


@dataclass
class Dash:
    client: TestClient
    store: Store
    settings: DashboardSettings
    withdrawals: list[dict[str, Any]]

    def csrf(self, path: str = "/login") -> str:
        page = self.client.get(path)
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found, page.text[:500]
        return found.group(1)

    def sign_in_local(self, username: str = "alice") -> str:
        """Password + enrolment; the TOTP secret."""
        token = self.csrf()
        reply = self.client.post(
            "/login/local",
            data={"username": username, "password": PASSWORD, "csrf_token": token},
            follow_redirects=False,
        )
        assert reply.status_code == 303 and reply.headers["location"] == "/2fa/enrol"
        page = self.client.get("/2fa/enrol")
        secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text)
        assert secret, page.text[:500]
        done = self.client.post(
            "/2fa/enrol",
            data={"code": pyotp.TOTP(secret.group(1)).now(), "csrf_token": self.csrf("/2fa/enrol")},
        )
        assert done.status_code == 200 and 'id="recovery-codes"' in done.text
        return secret.group(1)

    def spent_code(self, handle: str) -> str:
        """The code of the last accepted step (whatever the clock says now)."""
        user = self.store.local_user(handle)
        assert user is not None and user.totp_secret is not None
        return pyotp.TOTP(user.totp_secret).at(user.totp_last_step * 30)

    def audit(self) -> list[str]:
        return [e.event for e in reversed(self.store.audit_events(limit=500))]


def make_settings(tmp_path: Path, **values: Any) -> DashboardSettings:
    base: dict[str, Any] = {
        "environment": "test",
        "public_url": "http://testserver/",
        "database_path": tmp_path / "dashboard.sqlite3",
        "exchange_api_key": "k",
        "deposit_chains": ["bitcoin"],
        "cookie_secure": False,
        "max_failures": 3,
    }
    base.update(values)
    return DashboardSettings(**base)


def make_dash(
    tmp_path: Path, oidc: OidcClient | None = None, local_users: tuple[str, ...] = ("alice", "bob")
) -> Iterator[Dash]:
    settings = make_settings(tmp_path)
    withdrawals: list[dict[str, Any]] = []
    exchange = ExchangeClient(
        "http://exchange",
        "k",
        transport=httpx.ASGITransport(member_api({"alice", "bob"}, withdrawals)),
    )
    app = create_app(settings, exchange=exchange, oidc=oidc)
    store: Store = app.state.store
    for name in local_users:
        store.add_local_user(name, LIGHT.hash(PASSWORD), name)
    with TestClient(app, base_url="http://testserver") as client:
        yield Dash(client, store, settings, withdrawals)


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Dash]:
    yield from make_dash(tmp_path)


@dataclass
class RunningProvider:
    provider: Provider
    url: str


@pytest.fixture(scope="module")
def oidc_provider() -> Iterator[RunningProvider]:
    """The simnet provider on a free loopback port; redirect URI http://testserver/…"""
    port = free_port()
    provider = Provider(
        f"http://127.0.0.1:{port}/",
        {"dash": Client("dash", "s3cret", ("http://testserver/auth/oidc/callback",))},
        {"alice": User("alice", "pw"), "mallory": User("mallory", "pw")},
    )
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(build_app(provider))
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield RunningProvider(provider, provider.issuer)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
