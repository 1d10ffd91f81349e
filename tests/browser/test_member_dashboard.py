"""The member dashboard in a real browser (Debian's Chromium, headless): sign-in through the
OIDC test provider with TOTP enrolment, TOTP and recovery-code sign-in, the wallet page with a
simnet deposit credited, the CSV export, one member refused another's order (404), CSRF
refusals, lock-out after bad TOTP codes with its audit records, and a phone-sized layout.
Screenshots of each page land in tests/output/browser/."""

from __future__ import annotations

import importlib.resources
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.stack import CONFIRMATIONS, MAX_FAILURES, Stack, wait_until


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


AXE = Path(str(importlib.resources.files("axe_playwright_python") / "axe.min.js"))


def shot(page: Page, shots: Path, name: str) -> None:
    """A screenshot of the page, and an axe-core check: no serious or critical accessibility
    violation (axe-core is the copy the axe-playwright-python wheel ships)."""
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    found = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    serious = [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in found["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not serious, f"{name}: {serious}"


def through_provider(page: Page, stack: Stack, handle: str) -> None:
    """From the dashboard's login page through the provider's login form and back."""
    page.goto(f"{stack.dashboard_url}/login")
    page.click("#oidc-login")
    page.wait_for_url(f"{stack.provider_url}**")
    page.fill("#user_login", handle)
    page.fill("#user_pass", stack.passwords[handle])
    page.click("#wp-submit")


def enrol(
    page: Page, stack: Stack, handle: str, shots: Path | None = None
) -> tuple[str, list[str]]:
    """First sign-in: provider, TOTP enrolment; the secret and the recovery codes."""
    through_provider(page, stack, handle)
    page.wait_for_url(f"{stack.dashboard_url}/2fa/enrol")
    expect(page.locator(".qr svg")).to_be_visible()
    if shots:
        shot(page, shots, "03-totp-enrolment")
    secret = page.inner_text("#totp-secret").strip()
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("text=Turn on two-factor sign-in")
    # the click returns before the next page has loaded: wait for the codes to be shown
    expect(page.locator("#recovery-codes code")).to_have_count(10)
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(set(codes)) == 10
    if shots:
        shot(page, shots, "04-recovery-codes")
    page.click("text=I saved them")
    page.wait_for_url(f"{stack.dashboard_url}/wallet")
    return secret, codes


def next_code(secret: str) -> str:
    """The code of the next 30 s step: accepted (clock drift window) and not the step the
    previous sign-in used, so the test needs not wait for the clock."""
    return pyotp.TOTP(secret).at(time.time() + 30)


def sign_out(page: Page, stack: Stack) -> None:
    page.click("text=Sign out")
    page.wait_for_url(f"{stack.dashboard_url}/login")


def audit(stack: Stack, handle: str) -> list[str]:
    with sqlite3.connect(stack.database) as db:
        rows = db.execute(
            "SELECT event FROM audit WHERE user_id = (SELECT id FROM users"
            " WHERE member_handle = ?) ORDER BY id",
            (handle,),
        ).fetchall()
    return [r[0] for r in rows]


def test_sign_in_enrol_deposit_and_sign_in_again(page: Page, stack: Stack, shots: Path) -> None:
    page.goto(f"{stack.dashboard_url}/")
    page.wait_for_url(f"{stack.dashboard_url}/login")
    shot(page, shots, "01-login")
    through_provider(page, stack, "alice")
    page.wait_for_url(f"{stack.dashboard_url}/2fa/enrol")
    page.goto(f"{stack.provider_url}simnet/logins")
    assert "alice" in page.inner_text("body")
    page.go_back()
    secret = page.inner_text("#totp-secret").strip()
    shot(page, shots, "03-totp-enrolment")
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("text=Turn on two-factor sign-in")
    # the click returns before the next page has loaded: wait for the codes to be shown
    expect(page.locator("#recovery-codes code")).to_have_count(10)
    codes = page.locator("#recovery-codes code").all_inner_texts()
    shot(page, shots, "04-recovery-codes")
    page.click("text=I saved them")
    page.wait_for_url(f"{stack.dashboard_url}/wallet")

    # the deposit address of the exchange, paid by the simulated outside world
    address = page.inner_text(".deposit[data-chain=bitcoin] code.address").strip()
    assert address.startswith("bcrt1")
    expect(page.locator(".deposit[data-chain=bitcoin] .qr svg")).to_be_visible()
    txid = stack.chain.node.pay(address, 250_000)

    def shows(selector: str, text: str) -> bool:
        page.reload()
        return text in page.inner_text(selector)

    wait_until("deposit pending on the page", lambda: shows("main", txid), stack.logs(), every=0.5)
    stack.chain.node.mine(CONFIRMATIONS)
    wait_until(
        "deposit credited on the page",
        lambda: shows("#balances", "250,000"),
        stack.logs(),
        every=0.5,
    )
    assert page.inner_text("tr[data-asset=SATS] .available").strip() == "250,000"
    assert txid in page.inner_text("#history")
    shot(page, shots, "05-wallet")

    csv = page.request.get(f"{stack.dashboard_url}/wallet/history.csv")
    assert csv.status == 200 and "attachment" in csv.headers["content-disposition"]
    assert "250000" in csv.text() and txid in csv.text()

    # a phone-sized screen: nothing wider than the screen
    page.set_viewport_size({"width": 375, "height": 740})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, shots, "06-wallet-phone")
    page.set_viewport_size({"width": 1200, "height": 900})

    page.goto(f"{stack.dashboard_url}/account")
    expect(page.locator("#two-factor")).to_contain_text("10 unused recovery codes")
    shot(page, shots, "07-account")

    # signing in again: provider, then a TOTP code
    sign_out(page, stack)
    assert page.request.get(f"{stack.dashboard_url}/wallet", max_redirects=0).status == 303
    through_provider(page, stack, "alice")
    page.wait_for_url(f"{stack.dashboard_url}/2fa")
    shot(page, shots, "08-totp")
    page.fill("#code", next_code(secret))
    page.click("text=Continue")
    page.wait_for_url(f"{stack.dashboard_url}/wallet")

    # … or a recovery code, once
    sign_out(page, stack)
    through_provider(page, stack, "alice")
    page.wait_for_url(f"{stack.dashboard_url}/2fa")
    page.fill("#code", codes[0].upper())
    page.click("text=Continue")
    page.wait_for_url(f"{stack.dashboard_url}/wallet")
    page.goto(f"{stack.dashboard_url}/account")
    expect(page.locator("#two-factor")).to_contain_text("9 unused recovery codes")
    sign_out(page, stack)
    through_provider(page, stack, "alice")
    page.wait_for_url(f"{stack.dashboard_url}/2fa")
    page.fill("#code", codes[0])
    page.click("text=Continue")
    expect(page.locator("[role=alert]")).to_contain_text("Wrong or already used code")
    events = audit(stack, "alice")
    assert events.count("login_ok") == 3 and "recovery_code_used" in events
    assert events[-1] == "totp_failed"


def test_a_member_cannot_open_another_members_order_and_withdraws_with_a_code(
    page: Page, stack: Stack, shots: Path
) -> None:
    owner = {"X-API-Key": stack.exchange.owner_key}
    orders: dict[str, int] = {}
    for handle in ("bob", "dave"):
        member_id = stack.member_ids[handle]
        funded = httpx.post(
            f"{stack.exchange.url}/api/owner/members/{member_id}/adjustments",
            json={"asset": "SATS", "amount": 100_000, "reason": "test funding",
                  "idempotency_key": f"fund-{handle}"},
            headers=owner, timeout=10,
        )  # fmt: skip
        assert funded.status_code == 201, funded.text
        placed = httpx.post(
            f"{stack.exchange.url}/api/orders",
            json={"side": "buy", "type": "limit", "price": 1_000, "quantity": 2},
            headers={"Authorization": f"Bearer {stack.member_token(handle)}"},
            timeout=10,
        )
        assert placed.status_code == 201, placed.text
        orders[handle] = int(placed.json()["id"])

    secret, _ = enrol(page, stack, "bob")
    own = page.goto(f"{stack.dashboard_url}/orders/{orders['bob']}")
    assert own is not None and own.status == 200
    expect(page.locator("main")).to_contain_text("buy")
    shot(page, shots, "09-own-order")
    other = page.goto(f"{stack.dashboard_url}/orders/{orders['dave']}")
    assert other is not None and other.status == 404
    shot(page, shots, "10-other-members-order-404")
    missing = page.goto(f"{stack.dashboard_url}/orders/{orders['dave'] + 1000}")
    assert missing is not None and missing.status == 404
    assert page.inner_text("main") == other_text(page, stack, orders["dave"])

    # bob withdraws to the outside world, confirming with a fresh code; the node wallet is
    # funded here (the adjustments above are ledger entries only), so this test does not
    # depend on another test's deposit
    node = stack.chain.node
    node.pay(node.rpc("getnewaddress", wallet="wallet"), 100_000)
    node.mine(1)
    outside = node.rpc("getnewaddress", wallet="outside")
    page.goto(f"{stack.dashboard_url}/wallet/withdraw")
    page.select_option("#chain", "bitcoin")
    page.fill("#address", outside)
    page.fill("#amount", "20,000")
    page.fill("#code", pyotp.TOTP(secret).at(time.time() + 30))
    page.click("#withdraw-form button[type=submit]")
    expect(page.locator("#withdrawal-done")).to_contain_text("20,000 SATS")
    shot(page, shots, "13-withdrawal")

    def paid() -> bool:
        return any(
            out.get("address") == outside
            for tx in stack.chain.wallet_sends()
            for out in stack.chain.node.rpc("gettransaction", tx["txid"], wallet="wallet")[
                "details"
            ]
        )

    wait_until("the withdrawal paid by the node wallet", paid, stack.logs(), every=0.3)
    assert "withdrawal_requested" in audit(stack, "bob")


def other_text(page: Page, stack: Stack, order_id: int) -> str:
    """Another member's order answers exactly like a missing one."""
    page.goto(f"{stack.dashboard_url}/orders/{order_id}")
    text = page.inner_text("main")
    page.go_back()
    return text


def test_state_changes_without_the_csrf_token_are_refused(
    page: Page, stack: Stack, shots: Path
) -> None:
    enrol(page, stack, "erin")
    page.goto(f"{stack.dashboard_url}/account")
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    url = f"{stack.dashboard_url}/account/recovery-codes"

    # the session cookie alone (what a forged request carries) is not enough
    bare = page.request.post(url, max_redirects=0)
    assert bare.status == 403
    wrong = page.request.post(url, form={"csrf_token": "x" * 43}, max_redirects=0)
    assert wrong.status == 403
    foreign = page.request.post(
        url,
        form={"csrf_token": token},
        headers={"Origin": stack.provider_url.rstrip("/")},
        max_redirects=0,
    )
    assert foreign.status == 403
    # with the token from the page it goes through (signed in moments ago: no re-auth asked)
    good = page.request.post(url, form={"csrf_token": token}, max_redirects=0)
    assert good.status == 200 and 'id="recovery-codes"' in good.text()

    # a cross-site page that auto-submits a form to sign the member out
    evil = "http://127.0.0.3:9/evil"
    page.route(evil, lambda route: route.fulfill(
        content_type="text/html",
        body=f'<form id="f" method="post" action="{stack.dashboard_url}/logout"></form>'
             '<script>document.getElementById("f").submit()</script>',
    ))  # fmt: skip
    with page.expect_response(f"{stack.dashboard_url}/logout") as answer:
        page.goto(evil)
    assert answer.value.status == 403
    shot(page, shots, "11-csrf-refused")
    still = page.goto(f"{stack.dashboard_url}/account")
    assert still is not None and still.url.endswith("/account")
    assert audit(stack, "erin").count("csrf_refused") >= 3


def test_lock_out_after_bad_totp_codes(page: Page, stack: Stack, shots: Path) -> None:
    secret, _ = enrol(page, stack, "carol")
    sign_out(page, stack)
    through_provider(page, stack, "carol")
    page.wait_for_url(f"{stack.dashboard_url}/2fa")
    totp = pyotp.TOTP(secret)
    valid = {totp.at(time.time() + drift) for drift in (-30, 0, 30, 60)}
    wrong = next(c for c in ("000000", "111111", "222222") if c not in valid)
    for attempt in range(1, MAX_FAILURES + 1):
        page.fill("#code", wrong)
        with page.expect_response(f"{stack.dashboard_url}/2fa") as answer:
            page.click("text=Continue")
        if attempt < MAX_FAILURES:
            assert answer.value.status == 401
            expect(page.locator("[role=alert]")).to_contain_text("Wrong or already used code")
    assert answer.value.status == 423
    expect(page.locator("h1")).to_have_text("Account locked")
    shot(page, shots, "12-locked")

    # locked: even a good code after a fresh provider sign-in is refused
    through_provider(page, stack, "carol")
    expect(page.locator("h1")).to_have_text("Account locked")
    assert page.url.startswith(f"{stack.dashboard_url}/auth/oidc/callback")
    events = audit(stack, "carol")
    assert events.count("totp_failed") == MAX_FAILURES
    assert "lockout" in events and events[-1] == "login_refused_locked"
