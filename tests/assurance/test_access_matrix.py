"""Access matrix of the exchange (the app that holds members' money), generated from its routes.

Every route the app serves is walked (``matrix.walk``) and must be in exactly one class below —
a new route nobody classified fails ``test_every_route_is_classified``. Then each class is asked
by each kind of caller and the status asserted:

=================  =====  =======  =======  =====  ========  ====  =======  =====  ======
route class        none   expired  revoked  owner  read tok  full  session  other  cookie
=================  =====  =======  =======  =====  ========  ====  =======  =====  ======
member             401    401      401      401    403 [1]_  ok    ok       —      403 [2]_
member, own id     401    401      401      401    403 [1]_  ok    ok       404    403 [2]_
session only       401    401      401      401    403       403   ok       404    403 [2]_
owner              401    401 [3]_ 401      ok     403       403   403      —      —
=================  =====  =======  =======  =====  ========  ====  =======  =====  ======

``ok`` = neither 401 nor 403 nor 5xx (the request itself may still be refused, e.g. 422 for the
empty body); ``other`` = another member's session on the first member's resource;
``cookie`` = the session in the cookie, a change without ``X-Requested-With`` (the exchange's
CSRF rule). [1] reads (GET) are allowed to a read token. [2] GETs are allowed from the cookie.
[3] for owner routes, "expired" and "revoked" are an owner key past its ``not_after``.

The app runs in-process (TestClient) on SQLite with withdrawals configured, so the matrix takes
seconds; the same rules hold for the process (tests/assurance/test_fuzz_apis.py fuzzes it).
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from scnode_core.apikeys import ApiKeyStore, generate
from scnode_exchange.api.app import create_app
from scnode_exchange.api.auth import SessionTokens
from scnode_exchange.settings import ChainSettings
from tests.assurance.matrix import walk
from tests.unit.apps.exchange.api.node import Node, make_settings

PUBLIC = {
    "GET /api/health", "GET /v1/health", "GET /healthz", "GET /openapi.json", "GET /docs",
    "GET /docs/oauth2-redirect", "GET /redoc", "GET /api/markets", "GET /api/depth",
    "GET /api/orders", "GET /api/orders/bid", "GET /api/orders/ask", "GET /api/trades",
    "GET /api/candles", "GET /api/ticker", "POST /api/auth/register", "POST /api/auth/logout",
    "POST /api/auth/login", "WS /ws/candles", "WS /ws/market_stats", "WS /ws/orders",
    "WS /ws/trades",
}  # fmt: skip
KEYED = {"GET /metrics", "POST /api/dashboard/sessions"}  # their own key scopes (unit tests)
MEMBER = {
    "GET /api/auth/me", "GET /api/balances", "GET /api/history", "GET /api/history.csv",
    "GET /api/orders/mine", "GET /api/trades/mine", "GET /api/wallet", "POST /api/orders",
    "GET /v1/deposits", "GET /v1/deposits/address", "GET /v1/deposits/addresses",
    "GET /v1/deposits/pending", "POST /v1/deposits/address", "GET /v1/lightning/invoices",
    "POST /v1/lightning/invoices", "GET /v1/mining/payouts", "GET /v1/mining/workers",
    "POST /v1/mining/workers", "GET /v1/withdrawals", "GET /v1/withdrawals/policy",
    "POST /v1/withdrawals", "WS /ws/trade", "GET /v1/lightning/payments",
    "GET /v1/lightning/payments/policy", "POST /v1/lightning/payments",
    "POST /v1/lightning/payments/quote",
}  # fmt: skip
MEMBER_OWN = {  # routes naming one of the member's own things
    "GET /api/orders/{order_id:int}", "DELETE /api/orders/{order_id:int}",
    "GET /v1/withdrawals/{withdrawal_id}", "POST /v1/withdrawals/{withdrawal_id}/cancel",
    "DELETE /v1/mining/workers/{pool}/{name:path}", "GET /v1/lightning/payments/{payment_id}",
}  # fmt: skip
SESSION_ONLY = {"GET /api/tokens", "POST /api/tokens", "DELETE /api/tokens/{token_id}"}
OWNER_PREFIXES = ("/api/owner/", "/v1/owner/")

REFUSED = {401, 403}


@dataclass
class Callers:
    """Every kind of caller of the matrix, as request headers."""

    node: Node
    alice_id: int = 0
    bob_id: int = 0
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    cookie: str = ""
    ids: dict[str, str] = field(default_factory=dict)


def _regtest_address() -> str:
    from embit import ec, script
    from embit.networks import NETWORKS

    key = ec.PrivateKey(os.urandom(32))
    return str(script.p2wpkh(key.get_public_key()).address(NETWORKS["regtest"]))


@pytest.fixture(scope="module")
def callers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callers]:
    tmp = tmp_path_factory.mktemp("matrix")
    settings, owner_key = make_settings(
        tmp, f"sqlite:///{tmp / 'exchange.sqlite3'}",
        # withdrawals on: a chain API nobody answers (the worker retries; requests are recorded)
        chains={"bitcoin": ChainSettings(asset="SATS", api_url="http://127.0.0.1:9",
                                         api_key=SecretStr("unused-" + secrets.token_hex(8)))},
        withdrawals={"bitcoin": {"hrp": "bcrt", "min_amount": 1_000, "flat_fee": 300}},
        withdrawal_poll_seconds=600,
        withdrawal_approval_threshold=10_000,  # alice's 50,000 waits for the owner: cancellable
    )  # fmt: skip
    # owner keys besides the test owner's: metrics-only, and one whose grace period is over
    keys_file = settings.owner_api_keys_file
    metrics, old = generate({"metrics"}, "metrics"), generate({"owner"}, "old-owner")
    past = datetime.now(UTC) - timedelta(hours=1)
    records = [*ApiKeyStore.load(keys_file).records, metrics.record]
    ApiKeyStore([*records, replace(old.record, not_after=past)]).save(keys_file)
    with TestClient(create_app(settings)) as client:
        node = Node(client, owner_key, settings)
        c = Callers(node)
        c.alice_id, alice = node.member("alice", sats=10**8, azc=10**9)
        c.bob_id, bob = node.member("bob", sats=10**8)
        secret = settings.session_secret_file.read_bytes().strip()
        expired = SessionTokens(secret, 3600).issue(c.alice_id, now=time.time() - 7200)
        tokens = {}
        for name, scopes in (("read", ["read"]), ("full", ["read", "trade", "withdraw"]),
                             ("revoked", ["read", "trade", "withdraw"])):  # fmt: skip
            made = client.post("/api/tokens", json={"name": name, "scopes": scopes}, headers=alice)
            assert made.status_code == 201, made.text
            tokens[name] = made.json()["token"]
            c.ids[f"token_{name}"] = str(made.json()["id"])
        assert client.delete(f"/api/tokens/{c.ids['token_revoked']}", headers=alice).status_code
        c.headers = {
            "none": {},
            "expired": {"Authorization": f"Bearer {expired}"},
            "revoked": {"Authorization": f"Bearer {tokens['revoked']}"},
            "owner": node.owner,
            "owner-as-bearer": {"Authorization": f"Bearer {owner_key}"},
            "read token": {"Authorization": f"Bearer {tokens['read']}"},
            "full token": {"Authorization": f"Bearer {tokens['full']}"},
            "session": alice,
            "other": bob,
            "metrics key": {"X-API-Key": metrics.token},
            "revoked owner key": {"X-API-Key": old.token},
        }
        c.cookie = alice["Authorization"].removeprefix("Bearer ")
        # alice's own things: an order far from the market, a withdrawal, a mining worker
        order = client.post(
            "/api/orders",
            json={"market": "AZC/SATS", "side": "buy", "type": "limit", "price": 10,
                  "quantity": 1},
            headers=alice,
        )  # fmt: skip
        assert order.status_code == 201, order.text
        c.ids["order_id"] = str(order.json()["id"])
        withdrawal = client.post(
            "/v1/withdrawals",
            json={"chain": "bitcoin", "address": _regtest_address(), "amount": 50_000},
            headers={**alice, "Idempotency-Key": secrets.token_hex(8)},
        )
        assert withdrawal.status_code == 201, withdrawal.text
        c.ids["withdrawal_id"] = str(withdrawal.json()["id"])
        worker = client.post("/v1/mining/workers", json={"pool": "btc", "name": "alice.rig1"},
                             headers=alice)  # fmt: skip
        assert worker.status_code == 201, worker.text
        c.ids.update({"pool": "btc", "name": "alice.rig1", "member_id": str(c.bob_id)})
        c.ids.update({"alert_id": "1", "token_id": c.ids["token_full"]})
        # a Lightning payment of alice's (the app has no Lightning API: made on the database)
        c.ids["payment_id"] = str(_lightning_payment(client, c.alice_id))
        yield c


def _lightning_payment(client: TestClient, member_id: int) -> int:
    from scnode_exchange.lightning.bolt11 import DecodedInvoice
    from scnode_exchange.lightning.payments import LightningPaymentService

    invoice = DecodedInvoice(
        bolt11="lnbcrt10u1matrix", currency="bcrt", payment_hash=secrets.token_hex(32),
        amount_msat=1_000_000, created_at=int(time.time()), expiry=3600, payee="",
        description="matrix",
    )  # fmt: skip
    service = LightningPaymentService(client.app.state.sessions)  # type: ignore[attr-defined]
    return service.request_payment(member_id, secrets.token_hex(8), invoice, "regtest").id


def _route_class(route: str) -> str:
    path = route.split(" ", 1)[1]
    classes = [
        name
        for name, members in (("public", PUBLIC), ("keyed", KEYED), ("member", MEMBER),
                              ("member-own", MEMBER_OWN), ("session-only", SESSION_ONLY))
        if route in members
    ]  # fmt: skip
    if path.startswith(OWNER_PREFIXES):
        classes.append("owner")
    assert len(classes) <= 1, f"{route} is in more than one class: {classes}"
    return classes[0] if classes else "UNCLASSIFIED"


def _concrete(route: str, ids: dict[str, str]) -> tuple[str, str]:
    method, path = route.split(" ", 1)

    def value(match: re.Match[str]) -> str:
        return ids[match.group(1)]

    return method, re.sub(r"\{([a-z_]+)(?::[a-z]+)?\}", value, path)


def _routes(c: Callers) -> list[str]:
    return walk(c.node.client.app)  # type: ignore[arg-type]


def test_every_route_is_classified(callers: Callers) -> None:
    routes = _routes(callers)
    unclassified = [r for r in routes if _route_class(r) == "UNCLASSIFIED"]
    assert unclassified == [], "classify these routes in tests/assurance/test_access_matrix.py"
    listed = PUBLIC | KEYED | MEMBER | MEMBER_OWN | SESSION_ONLY
    assert sorted(listed - set(routes)) == [], "classified routes the app no longer serves"
    assert sum(r.startswith(OWNER_PREFIXES, r.index(" ") + 1) for r in routes) >= 15


def _ask(c: Callers, route: str, caller: str, cookie: bool = False) -> int:
    method, path = _concrete(route, c.ids)
    client = c.node.client
    client.cookies.clear()
    headers = dict(c.headers.get(caller, {}))
    if cookie:
        client.cookies.set("scnode_session", c.cookie)
    body: dict[str, object] | None = {} if method in ("POST", "PUT") else None
    reply = client.request(method, path, headers=headers, json=body)
    client.cookies.clear()
    # 503: the in-process app has no chain or Lightning API behind it (the fuzz run has both)
    assert reply.status_code < 500 or reply.status_code == 503, (route, caller, reply.text)
    return int(reply.status_code)


def _http(c: Callers, kind: str) -> list[str]:
    return [r for r in _routes(c) if _route_class(r) == kind and not r.startswith("WS ")]


@pytest.mark.parametrize("kind", ["member", "member-own", "session-only"])
def test_member_routes_refuse_every_caller_but_the_member(callers: Callers, kind: str) -> None:
    routes = _http(callers, kind)
    assert routes
    rows: list[str] = []
    for route in routes:
        method = route.split(" ")[0]
        reads = method == "GET"
        got = {
            who: _ask(callers, route, who)
            for who in ("none", "expired", "revoked", "owner-as-bearer", "read token")
        }
        got["cookie"] = _ask(callers, route, "none", cookie=True)  # fmt: skip
        expected = {"none": 401, "expired": 401, "revoked": 401, "owner-as-bearer": 401}
        for who, status in expected.items():
            assert got[who] == status, (route, who, got[who])
        if kind == "session-only" or not reads:
            assert got["read token"] == 403, (route, got["read token"])
        else:
            assert got["read token"] not in REFUSED, (route, got["read token"])
        if reads:
            assert got["cookie"] not in REFUSED, (route, got["cookie"])
        else:
            assert got["cookie"] == 403, (route, "cookie without X-Requested-With")
        if method != "DELETE" and not (kind == "member-own" and not reads):
            # deleting or cancelling own things runs last (test_own_things_...)
            full = _ask(callers, route, "full token")
            if kind == "session-only":
                assert full == 403, (route, full)
            else:
                assert full not in REFUSED, (route, full)
            assert _ask(callers, route, "session") not in REFUSED, route
        rows.append(route)
    print(f"matrix {kind}: {len(rows)} routes x 7 callers asserted")


def test_another_members_things_answer_404_like_missing_ones(callers: Callers) -> None:
    for route in sorted(MEMBER_OWN | {"DELETE /api/tokens/{token_id}"}):
        status = _ask(callers, route, "other")
        assert status == 404, (route, status)
    # and the owner of the thing still has it (nothing above changed it)
    for route in ("GET /api/orders/{order_id:int}", "GET /v1/withdrawals/{withdrawal_id}",
                  "GET /v1/lightning/payments/{payment_id}"):  # fmt: skip
        assert _ask(callers, route, "session") == 200, route


def test_owner_routes_refuse_members_and_dead_or_narrow_keys(callers: Callers) -> None:
    routes = _http(callers, "owner")
    assert len(routes) >= 15
    for route in routes:
        callers_asked = ("none", "revoked owner key", "session", "full token", "metrics key")
        got = {who: _ask(callers, route, who) for who in callers_asked}
        assert got == {"none": 401, "revoked owner key": 401, "session": 403,
                       "full token": 403, "metrics key": 403}, (route, got)  # fmt: skip
        if route.split(" ")[0] == "GET":
            assert _ask(callers, route, "owner") not in REFUSED, route
    print(f"matrix owner: {len(routes)} routes x 5 callers asserted")


def test_own_things_the_member_may_delete_or_cancel(callers: Callers) -> None:
    for route, ok in (
        ("POST /v1/withdrawals/{withdrawal_id}/cancel", {200}),
        ("DELETE /api/orders/{order_id:int}", {200}),
        ("DELETE /v1/mining/workers/{pool}/{name:path}", {204}),
        ("DELETE /api/tokens/{token_id}", {204}),
    ):
        status = _ask(callers, route, "session")
        assert status in ok, (route, status)
    # the full token was the one deleted: it is refused from now on
    assert _ask(callers, "GET /api/balances", "full token") == 401
