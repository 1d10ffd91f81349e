"""The dashboard's sign-in rules in-process: CSRF on every state-changing route, TOTP
enrolment and replay refusal, recovery codes, lock-out with audit, idle and absolute session
timeouts, re-authentication before key changes, and the pages' security headers."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pyotp
import pytest
from fastapi.routing import APIRoute

from scnode_dashboard.app import csrf
from tests.unit.apps.dashboard.conftest import PASSWORD, Dash


def _depends_on(dependant: object, call: object) -> bool:
    deps = getattr(dependant, "dependencies", [])
    return any(d.call is call or _depends_on(d, call) for d in deps)


def test_every_state_changing_route_checks_the_csrf_token(dash: Dash) -> None:
    changing = [
        r for r in dash.client.app.routes  # type: ignore[attr-defined]
        if isinstance(r, APIRoute) and set(r.methods or ()) - {"GET", "HEAD"}
    ]  # fmt: skip
    assert {r.path for r in changing} >= {"/login/local", "/2fa", "/logout", "/reauth"}
    for route in changing:
        assert _depends_on(route.dependant, csrf), f"{route.path} lacks the CSRF check"


def test_local_sign_in_enrol_totp_replay_and_recovery_code(dash: Dash) -> None:
    assert dash.client.get("/wallet", follow_redirects=False).headers["location"] == "/login"
    secret = dash.sign_in_local()
    wallet = dash.client.get("/wallet")
    assert wallet.status_code == 200 and "1,000" in wallet.text and "bcrt1qexample" in wallet.text
    assert 'id="frozen"' not in wallet.text

    dash.client.post("/logout", data={"csrf_token": dash.csrf("/wallet")})
    assert dash.client.get("/wallet", follow_redirects=False).status_code == 303
    token = dash.csrf()
    dash.client.post(
        "/login/local", data={"username": "alice", "password": PASSWORD, "csrf_token": token}
    )
    # the code that enrolled is spent: the same 30 s step is refused (replay)
    replay = dash.client.post(
        "/2fa", data={"code": dash.spent_code("alice"), "csrf_token": dash.csrf("/2fa")}
    )
    assert replay.status_code == 401
    ok = dash.client.post(
        "/2fa",
        data={"code": pyotp.TOTP(secret).at(time.time() + 30), "csrf_token": dash.csrf("/2fa")},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/wallet"
    events = dash.audit()
    assert events.count("login_ok") == 2 and "totp_failed" in events


def test_lock_out_after_bad_codes_is_audited_and_holds(dash: Dash) -> None:
    dash.sign_in_local()
    dash.client.post("/logout", data={"csrf_token": dash.csrf("/wallet")})
    dash.client.post(
        "/login/local", data={"username": "alice", "password": PASSWORD, "csrf_token": dash.csrf()}
    )
    statuses = [
        dash.client.post(
            "/2fa", data={"code": "000000", "csrf_token": dash.csrf("/2fa")}
        ).status_code
        for _ in range(dash.settings.max_failures)
    ]
    assert statuses == [401] * (dash.settings.max_failures - 1) + [423]
    # the right password now is refused too, while the lock lasts
    again = dash.client.post(
        "/login/local", data={"username": "alice", "password": PASSWORD, "csrf_token": dash.csrf()}
    )
    assert again.status_code == 423
    events = dash.audit()
    assert events.count("totp_failed") == 3 and "lockout" in events
    assert events[-1] == "login_refused_locked"
    # bob is not affected (the owner froze his exchange account: the wallet says so)
    assert dash.sign_in_local("bob")
    assert 'id="frozen"' in dash.client.get("/wallet").text


def test_wrong_passwords_lock_the_account(dash: Dash) -> None:
    codes = [
        dash.client.post(
            "/login/local",
            data={"username": "bob", "password": "wrong", "csrf_token": dash.csrf()},
        ).status_code
        for _ in range(3)
    ]
    assert codes == [401, 401, 423]
    unknown = dash.client.post(
        "/login/local", data={"username": "nobody", "password": "x", "csrf_token": dash.csrf()}
    )
    assert unknown.status_code == 401


def test_sessions_end_when_idle_and_after_the_absolute_limit(dash: Dash) -> None:
    idle, absolute = dash.settings.session_idle_seconds, dash.settings.session_absolute_seconds
    for handle, column, age in (("alice", "last_seen", idle + 5),
                                ("bob", "created", absolute + 5)):  # fmt: skip
        dash.client.cookies.clear()
        dash.sign_in_local(handle)
        assert dash.client.get("/wallet").status_code == 200
        user = dash.store.local_user(handle)
        assert user is not None
        (session,) = dash.store.user_sessions(user.id)
        with dash.store._tx() as db:  # age the row as the clock would
            db.execute(
                f"UPDATE sessions SET {column} = ? WHERE id_hash = ?",  # noqa: S608
                (time.time() - age, session.id_hash),
            )
        reply = dash.client.get("/wallet", follow_redirects=False)
        assert reply.status_code == 303 and reply.headers["location"] == "/login"
        assert dash.store.user_sessions(user.id) == []
    assert dash.audit().count("session_expired") == 2


def test_key_changes_need_a_fresh_code(dash: Dash) -> None:
    secret = dash.sign_in_local()
    for session in dash.store.user_sessions(1):
        dash.store.update_session(session.id_hash, reauth_at=0)
    token = dash.csrf("/account")
    asked = dash.client.post(
        "/account/recovery-codes", data={"csrf_token": token}, follow_redirects=False
    )
    assert asked.status_code == 303 and asked.headers["location"] == "/reauth?next=/account"
    confirmed = dash.client.post(
        "/reauth",
        data={"code": pyotp.TOTP(secret).at(time.time() + 30), "next": "//evil.example/",
              "csrf_token": dash.csrf("/reauth")},
        follow_redirects=False,
    )  # fmt: skip
    assert confirmed.status_code == 303 and confirmed.headers["location"] == "/account"
    fresh = dash.client.post("/account/recovery-codes", data={"csrf_token": dash.csrf("/account")})
    codes = re.findall(r"<li><code>([a-z0-9-]{14})</code></li>", fresh.text)
    assert len(codes) == 10
    assert "recovery_codes_replaced" in dash.audit()


def test_members_see_only_their_orders_and_pages_carry_security_headers(dash: Dash) -> None:
    dash.sign_in_local("alice")
    own = dash.client.get("/orders/1")
    other = dash.client.get("/orders/2")
    assert own.status_code == 200 and other.status_code == 404
    assert "default-src 'self'" in own.headers["content-security-policy"]
    assert own.headers["x-frame-options"] == "DENY"
    assert own.headers["cache-control"] == "no-store"
    cookie = own.request.headers.get("cookie", "")
    assert cookie.startswith("scnode_dashboard=")


def test_a_withdrawal_needs_a_fresh_code_and_goes_out_for_the_member(dash: Dash) -> None:
    secret = dash.sign_in_local("alice")
    page = dash.client.get("/wallet/withdraw")
    assert page.status_code == 200 and 'value="bitcoin"' in page.text
    form = {"chain": "bitcoin", "address": "bcrt1qoutside", "idempotency_key": "k" * 16,
            "csrf_token": dash.csrf("/wallet/withdraw")}  # fmt: skip

    typo = dash.client.post("/wallet/withdraw", data={**form, "amount": "12.5", "code": "x"})
    assert typo.status_code == 422 and "at most 0 decimal places" in typo.text
    wrong = dash.client.post("/wallet/withdraw", data={**form, "amount": "5,000", "code": "000000"})
    assert wrong.status_code == 401 and dash.withdrawals == []
    spent = dash.spent_code("alice")  # used by the enrolment: replay refused
    replay = dash.client.post("/wallet/withdraw", data={**form, "amount": "5000", "code": spent})
    assert replay.status_code == 401 and dash.withdrawals == []
    code = pyotp.TOTP(secret).at(time.time() + 30)
    done = dash.client.post("/wallet/withdraw", data={**form, "amount": "5,000", "code": code})
    assert done.status_code == 201 and 'id="withdrawal-done"' in done.text
    (sent,) = dash.withdrawals
    assert (sent["member"], sent["chain"], sent["address"], sent["amount"]) == (
        "alice", "bitcoin", "bcrt1qoutside", 5000,
    )  # fmt: skip
    assert sent["idempotency_key"] == "k" * 16
    events = dash.audit()
    assert events.count("withdrawal_code_failed") == 2 and "withdrawal_requested" in events


def test_amounts_are_parsed_exactly() -> None:
    from scnode_dashboard.app import parse_amount

    assert parse_amount("1.00000001", 8) == 100_000_001
    assert parse_amount("1,234", 0) == 1234
    for bad in ("0", "-1", "1.5", "nan", "inf", "abc", ""):
        with pytest.raises(ValueError):
            parse_amount(bad, 0)


def test_ended_sessions_are_purged(dash: Dash) -> None:
    dash.sign_in_local("alice")
    for _ in range(3):  # abandoned sign-ins (no cookie kept)
        dash.client.cookies.clear()
        dash.client.get("/login")
    now = time.time()
    settings = dash.settings
    idle, absolute = settings.session_idle_seconds, settings.session_absolute_seconds
    assert dash.store.purge_sessions(now, idle, absolute, 600) == 0
    # 11 minutes on: the unfinished ones are gone, alice's signed-in one too (idle > 15 min
    # only after 16 minutes)
    assert dash.store.purge_sessions(now + 660, idle, absolute, 600) == 3
    assert dash.store.purge_sessions(now + idle + 60, idle, absolute, 600) == 1


def test_production_settings_refuse_plain_http_and_insecure_cookies(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from tests.unit.apps.dashboard.conftest import make_settings

    for values in ({"public_url": "http://node.example/"}, {"cookie_secure": False},
                   {"oidc_discovery_url": "https://btcofaz.example/.well-known/x"}):  # fmt: skip
        good = {"public_url": "https://node.example/", "cookie_secure": True}
        with pytest.raises(ValidationError):
            make_settings(tmp_path, environment="production", **{**good, **values})
    assert (
        make_settings(
            tmp_path,
            environment="production",
            public_url="https://node.example/",
            cookie_secure=True,
        ).origin
        == "https://node.example"
    )


def test_add_local_user_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from scnode_dashboard.__main__ import main
    from scnode_dashboard.security import verify_secret
    from scnode_dashboard.store import Store

    env = tmp_path / "dashboard.env"
    env.write_text(
        "SCNODE_DASHBOARD_PUBLIC_URL=https://node.example/\n"
        f"SCNODE_DASHBOARD_DATABASE_PATH={tmp_path / 'd.sqlite3'}\n"
        "SCNODE_DASHBOARD_EXCHANGE_API_KEY=k\n"
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["--env-file", str(env), "add-local-user", "owner", "owner"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
    assert main(["--env-file", str(env), "add-local-user", "owner", "owner"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
    assert main(["--env-file", str(env), "add-local-user", "owner", "owner"]) == 1
    store = Store(tmp_path / "d.sqlite3")
    user = store.local_user("owner")
    store.close()
    assert user is not None and user.password_hash is not None
    assert verify_secret(user.password_hash, "a long enough passphrase")
    assert (tmp_path / "d.sqlite3").stat().st_mode & 0o777 == 0o600
