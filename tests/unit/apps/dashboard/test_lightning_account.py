"""In-process: the wallet page's Lightning section against a small exchange with the LaaS
invoice routes (and without them: "not configured"), and the account page for the owner and
the password change of a local account (re-auth, current password, other sessions ended)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import Header, HTTPException
from fastapi.testclient import TestClient

from scnode_dashboard.app import create_app
from scnode_dashboard.exchange import ExchangeClient
from scnode_dashboard.store import OWNER, Store
from tests.unit.apps.dashboard.conftest import LIGHT, PASSWORD, Dash, make_settings, member_api

BOLT11 = "lnbcrt10u1pexample"


@pytest.fixture
def ln_dash(tmp_path: Path) -> Iterator[tuple[Dash, dict[str, Any]]]:
    """The dashboard before an exchange whose Lightning invoices live in ``world``:
    ``world["invoices"]`` per (member, idempotency key), ``world["configured"]``."""
    world: dict[str, Any] = {"invoices": {}, "configured": True, "posts": 0}
    api = member_api({"alice", "bob"})

    def who(authorization: str) -> str:
        return authorization.removeprefix("Bearer tok-")

    def refuse_unless_configured() -> None:
        if not world["configured"]:
            raise HTTPException(503, "Lightning deposits are not configured on this node")

    @api.post("/v1/lightning/invoices", status_code=201)
    def create(body: dict[str, Any], authorization: str = Header("")) -> dict[str, Any]:
        refuse_unless_configured()
        world["posts"] += 1
        key = (who(authorization), body["idempotency_key"])
        if body["amount_sats"] > 1_000_000:
            raise HTTPException(422, "amount_sats must be between 1 and 1000000")
        if key not in world["invoices"]:
            number = len(world["invoices"])
            world["invoices"][key] = {
                "payment_hash": f"{number:064x}", "bolt11": f"{BOLT11}{number}",
                "amount_sats": body["amount_sats"], "description": body["description"],
                "state": "unpaid", "credited_sats": 0,
                "expires_at": "2999-01-01T00:00:00", "created_at": "2026-01-01T00:00:00",
                "credited_at": None,
            }  # fmt: skip
        return dict(world["invoices"][key])

    @api.get("/v1/lightning/invoices")
    def listed(authorization: str = Header("")) -> dict[str, Any]:
        refuse_unless_configured()
        mine = [v for (m, _), v in world["invoices"].items() if m == who(authorization)]
        return {"invoices": list(reversed(mine))}

    # payments: an invoice "lnbcrt<sats>..." quotes <sats> with a 10-sat fee reserve
    world["payments"] = []

    def quote_of(bolt11: str) -> dict[str, Any]:
        refuse_unless_configured()
        found = re.match(r"^lnbcrt(\d+)x", bolt11)
        if not found:
            raise HTTPException(422, "not a BOLT11 invoice")
        sats = int(found.group(1))
        return {"payment_hash": "ab" * 32, "destination": "02" + "cd" * 32,
                "description": "outside", "amount_msat": sats * 1000, "amount_sats": sats,
                "max_fee_sats": 10, "max_total_sats": sats + 10, "expires_at": 4_000_000_000,
                "internal": False, "daily_limit_sats": None, "daily_used_sats": 0}  # fmt: skip

    @api.get("/v1/lightning/payments/policy")
    def pay_policy() -> dict[str, Any]:
        refuse_unless_configured()
        return {"min_sats": 1, "max_sats": 1_000_000, "daily_limit_sats": 5_000_000,
                "fee_floor_sats": 10, "fee_ppm": 5000, "daily_used_sats": 0}  # fmt: skip

    @api.post("/v1/lightning/payments/quote")
    def pay_quote(body: dict[str, Any]) -> dict[str, Any]:
        return quote_of(body["bolt11"])

    @api.post("/v1/lightning/payments", status_code=201)
    def pay(body: dict[str, Any], authorization: str = Header("")) -> dict[str, Any]:
        quote = quote_of(body["bolt11"])
        made = {**quote, "id": len(world["payments"]) + 1, "member": who(authorization),
                "idempotency_key": body["idempotency_key"], "kind": "external",
                "state": "reserved", "bolt11": body["bolt11"], "fee_sats": None,
                "total_sats": quote["max_total_sats"], "preimage": None,
                "failure_reason": None}  # fmt: skip
        world["payments"].append(made)
        return made

    @api.get("/v1/lightning/payments")
    def payments(authorization: str = Header("")) -> dict[str, Any]:
        refuse_unless_configured()
        mine = [p for p in world["payments"] if p["member"] == who(authorization)]
        return {"payments": list(reversed(mine)), "next_before": None}

    @api.get("/v1/lightning/payments/{payment_id}")
    def payment(payment_id: int, authorization: str = Header("")) -> dict[str, Any]:
        for made in world["payments"]:
            if made["id"] == payment_id and made["member"] == who(authorization):
                return dict(made)
        raise HTTPException(404, "not_found")

    settings = make_settings(tmp_path)
    exchange = ExchangeClient("http://exchange", "k", transport=httpx.ASGITransport(api))
    app = create_app(settings, exchange=exchange)
    store: Store = app.state.store
    for name in ("alice", "bob"):
        store.add_local_user(name, LIGHT.hash(PASSWORD), name)
    with TestClient(app, base_url="http://testserver") as client:
        yield Dash(client, store, settings, []), world


def form_of(page: str) -> dict[str, str]:
    found = dict(re.findall(r'name="(csrf_token|idempotency_key)" value="([^"]+)"', page))
    assert "idempotency_key" in found, page[:300]
    return found


def test_a_lightning_invoice_from_the_wallet_page_once_per_form(
    ln_dash: tuple[Dash, dict[str, Any]],
) -> None:
    dash, world = ln_dash
    dash.sign_in_local("alice")
    wallet = dash.client.get("/wallet")
    assert 'id="lightning-form"' in wallet.text and "None yet." in wallet.text
    form = {**form_of(wallet.text), "amount": "1,000", "memo": "  tea  "}
    first = dash.client.post("/wallet/lightning/invoices", data=form, follow_redirects=False)
    again = dash.client.post("/wallet/lightning/invoices", data=form, follow_redirects=False)
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    assert len(world["invoices"]) == 1 and world["posts"] == 2
    (made,) = world["invoices"].values()
    assert made["amount_sats"] == 1000 and made["description"] == "tea"

    shown = dash.client.get(first.headers["location"])
    assert f"{BOLT11}0" in shown.text and "<svg" in shown.text
    assert "Pay before 2999-01-01 00:00:00 UTC" in shown.text
    # a new render, a new key: a second invoice is a second form
    assert form_of(shown.text)["idempotency_key"] != form["idempotency_key"]
    made["state"], made["credited_sats"] = "credited", 1000
    paid = dash.client.get("/wallet")
    row = re.search(r'<tr data-payment-hash="0{64}">.*?</tr>', paid.text, re.S)
    assert row and ">paid<" in row.group(0) and "1,000 sats" in row.group(0)

    # bob sees none of alice's invoices
    dash.client.post("/logout", data={"csrf_token": dash.csrf("/wallet")})
    dash.sign_in_local("bob")
    assert f"{BOLT11}0" not in dash.client.get("/wallet").text


def test_refused_amounts_and_an_exchange_without_lightning(
    ln_dash: tuple[Dash, dict[str, Any]],
) -> None:
    dash, world = ln_dash
    dash.sign_in_local("alice")
    form = form_of(dash.client.get("/wallet").text)
    typo = dash.client.post("/wallet/lightning/invoices", data={**form, "amount": "1.5"})
    assert "at most 0 decimal places" in typo.text and world["posts"] == 0
    big = dash.client.post("/wallet/lightning/invoices", data={**form, "amount": "2000000"})
    assert "No invoice was made: amount_sats must be between" in big.text
    assert world["invoices"] == {}

    world["configured"] = False
    page = dash.client.get("/wallet")
    assert page.status_code == 200
    assert 'id="lightning-off">Lightning is not configured on this node.' in page.text
    assert 'id="lightning-form"' not in page.text and 'id="balances"' in page.text
    sent = dash.client.post("/wallet/lightning/invoices", data={**form, "amount": "10"})
    assert "Lightning is not configured on this node." in sent.text


def test_an_exchange_without_the_lightning_routes_says_not_configured(dash: Dash) -> None:
    dash.sign_in_local("alice")
    page = dash.client.get("/wallet")
    assert page.status_code == 200 and "Lightning is not configured on this node." in page.text


def test_paying_an_invoice_needs_a_fresh_code_and_shows_the_fee_reserve(
    ln_dash: tuple[Dash, dict[str, Any]],
) -> None:
    dash, world = ln_dash
    secret = dash.sign_in_local("alice")
    wallet = dash.client.get("/wallet")
    assert 'href="/wallet/lightning/pay"' in wallet.text
    start = dash.client.get("/wallet/lightning/pay")
    assert 'id="quote-form"' in start.text and "5000 ppm" in start.text
    token = dash.csrf("/wallet/lightning/pay")
    bad = dash.client.post(
        "/wallet/lightning/pay/quote", data={"bolt11": "nonsense", "csrf_token": token}
    )
    assert bad.status_code == 422 and "not a BOLT11 invoice" in bad.text
    invoice = "lnbcrt2500xrest"
    quote = dash.client.post(
        "/wallet/lightning/pay/quote", data={"bolt11": f" {invoice} ", "csrf_token": token}
    )
    assert quote.status_code == 200 and world["payments"] == []
    assert re.search(r'id="quote-max-fee">10 sats<', quote.text)
    assert re.search(r'id="quote-total">2,510 sats<', quote.text)
    form = {**form_of(quote.text), "bolt11": invoice}
    assert re.search(rf'name="bolt11" value="{invoice}"', quote.text)

    # a wrong invoice in the confirm form does not spend the code; a wrong code pays nothing
    code = pyotp.TOTP(secret).at(time.time() + 30)
    bad = dash.client.post("/wallet/lightning/pay", data={**form, "bolt11": "x", "code": code})
    assert bad.status_code == 422 and world["payments"] == []
    wrong = dash.client.post("/wallet/lightning/pay", data={**form, "code": "000000"})
    assert wrong.status_code == 401 and world["payments"] == []
    assert 'id="pay-form"' in wrong.text  # the confirm form again, for another code
    paid = dash.client.post(
        "/wallet/lightning/pay", data={**form, "code": code}, follow_redirects=False
    )
    assert paid.status_code == 303 and paid.headers["location"] == "/wallet/lightning/payments/1"
    status = dash.client.get("/wallet/lightning/payments/1")
    assert 'data-state="reserved"' in status.text and 'http-equiv="refresh"' in status.text
    assert "at most 10 sats (reserved)" in status.text
    # the same form again (a double submit): the same payment, no code spent, nothing new
    again = dash.client.post(
        "/wallet/lightning/pay", data={**form, "code": "000000"}, follow_redirects=False
    )
    assert again.headers["location"] == "/wallet/lightning/payments/1"
    assert len(world["payments"]) == 1

    world["payments"][0].update(state="complete", fee_sats=3, total_sats=2503)
    done = dash.client.get("/wallet/lightning/payments/1")
    assert "Paid." in done.text and 'http-equiv="refresh"' not in done.text
    assert re.search(r'id="payment-fee">3 sats<', done.text)
    assert re.search(r'id="payment-total">2,503 sats<', done.text)
    assert "lightning_payment_requested" in dash.audit()
    assert "lightning_payment_code_failed" in dash.audit()

    # bob cannot open alice's payment
    dash.client.post("/logout", data={"csrf_token": dash.csrf("/wallet")})
    dash.sign_in_local("bob")
    assert dash.client.get("/wallet/lightning/payments/1").status_code == 404
    world["configured"] = False
    off = dash.client.get("/wallet/lightning/pay")
    assert off.status_code == 200 and "Lightning is not configured on this node." in off.text


def owner_dash(dash: Dash) -> str:
    """Make alice's account the owner's (role owner, no member account); her TOTP secret."""
    with dash.store._tx() as db:
        db.execute("UPDATE users SET role = ? WHERE username = 'alice'", (OWNER,))
    return dash.sign_in_local("alice")


def test_the_owner_has_an_account_page_and_changes_the_password(dash: Dash) -> None:
    secret = owner_dash(dash)
    page = dash.client.get("/account")
    assert page.status_code == 200 and "The node's owner." in page.text
    assert 'id="api-tokens"' not in page.text and 'id="password-form"' in page.text
    assert 'href="/account">Account</a>' in page.text  # in the owner's menu
    # another session of hers (a second browser), which the change ends
    other = TestClient(dash.client.app, base_url="http://testserver")
    other_dash = Dash(other, dash.store, dash.settings, [])
    reply = other.post(
        "/login/local",
        data={"username": "alice", "password": PASSWORD, "csrf_token": other_dash.csrf()},
    )
    assert reply.url.path == "/2fa"
    other.post(
        "/2fa",
        data={"code": pyotp.TOTP(secret).at(time.time() + 30),
              "csrf_token": other_dash.csrf("/2fa")},
    )  # fmt: skip
    assert other.get("/owner/members", follow_redirects=False).status_code != 303
    user = dash.store.local_user("alice")
    assert user is not None and len(dash.store.user_sessions(user.id)) == 2

    new = "a much longer new password"
    change = {"current": PASSWORD, "new": new, "repeat": new}
    # a while later: the sign-in's re-auth ran out, her phone shows a code not used yet
    for session in dash.store.user_sessions(user.id):
        dash.store.update_session(session.id_hash, reauth_at=0)
    with dash.store._tx() as db:
        db.execute("UPDATE users SET totp_last_step = totp_last_step - 2 WHERE id = ?", (user.id,))
    asked = dash.client.post(
        "/account/password", data={**change, "csrf_token": dash.csrf("/account")},
        follow_redirects=False,
    )  # fmt: skip
    assert asked.status_code == 303 and asked.headers["location"] == "/reauth?next=/account"
    confirmed = dash.client.post(
        "/reauth",
        data={"code": pyotp.TOTP(secret).now(), "next": "/account",
              "csrf_token": dash.csrf("/reauth")},
    )  # fmt: skip
    assert confirmed.url.path == "/account"
    token = dash.csrf("/account")
    short = dash.client.post(
        "/account/password", data={**change, "new": "short", "repeat": "short", "csrf_token": token}
    )
    assert short.status_code == 422 and "needs 12 characters" in short.text
    differ = dash.client.post(
        "/account/password", data={**change, "repeat": new + "!", "csrf_token": token}
    )
    assert differ.status_code == 422 and "differ" in differ.text
    wrong = dash.client.post(
        "/account/password", data={**change, "current": "wrong", "csrf_token": token}
    )
    assert wrong.status_code == 401 and "current password is wrong" in wrong.text
    done = dash.client.post("/account/password", data={**change, "csrf_token": token})
    assert done.status_code == 200 and "Password changed." in done.text
    assert len(dash.store.user_sessions(user.id)) == 1
    assert other.get("/owner/members", follow_redirects=False).headers["location"] == "/login"
    assert [e for e in dash.audit() if e.startswith("password_")] == [
        "password_change_failed",
        "password_changed",
    ]
    changed = dash.store.local_user("alice")
    assert changed is not None and changed.password_hash != user.password_hash
    other.close()
