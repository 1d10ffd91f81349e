"""The owner dashboard in a real browser (Debian's Chromium, headless) against the real stack:
the owner signs in with a local account + TOTP (made with ``add-local-user --owner``), freezes
a member who is then refused by the dashboard and the exchange, adjusts a balance with a reason
that shows in the member's history and the audit views, approves a large withdrawal that the
node wallet then pays, and sees a stopped component as down. A member gets 404 on every owner
page. Every owner page is screenshotted (tests/output/browser/owner-*.png) and axe-checked."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyotp
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.browser.stack import APPROVAL_ABOVE, Stack, wait_until
from tests.browser.test_member_dashboard import shot  # screenshot + axe-core check

CHROMIUM = Path("/usr/bin/chromium")
MEMBERS = ["mia", "noah"]
OWNER = "olivia"
OWNER_PAGES = ["/owner/members", "/owner/funds", "/owner/components", "/owner/audit"]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="scnode-owner-"))
    running = Stack(root, owner=OWNER)
    try:
        yield running.start(MEMBERS)
    finally:
        running.stop()
        shutil.rmtree(root, ignore_errors=True)


# module scope (see test_member_dashboard.py: Playwright's sync API keeps a loop running)
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (apt-get install chromium)")
    pw: Playwright
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            launched.close()


def new_page(browser: Browser, width: int = 1200) -> Page:
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.set_default_timeout(15_000)
    return page


@pytest.fixture(scope="module")
def owner(browser: Browser, stack: Stack, shots: Path) -> Iterator[tuple[Page, str]]:
    """The owner signed in (local account, TOTP enrolled) for the whole module."""
    page = new_page(browser)
    page.goto(f"{stack.dashboard_url}/login")
    page.fill("#username", OWNER)
    page.fill("#password", stack.owner_password)
    page.click("form[action='/login/local'] button[type=submit]")
    page.wait_for_url(f"{stack.dashboard_url}/2fa/enrol")
    secret = page.inner_text("#totp-secret").strip()
    page.fill("#code", code(stack, OWNER, secret, enrol=True))
    page.click("text=Turn on two-factor sign-in")
    expect(page.locator("#recovery-codes code")).to_have_count(10)
    page.click("text=I saved them")
    page.wait_for_url(f"{stack.dashboard_url}/owner/members")
    shot(page, shots, "owner-01-members")
    try:
        yield page, secret
    finally:
        page.context.close()


def code(stack: Stack, username: str, secret: str, enrol: bool = False) -> str:
    """A TOTP code the dashboard accepts now and that was not used yet: the earliest step
    after the user's recorded one within the ±1 step window (waiting when all are spent)."""
    with sqlite3.connect(stack.database) as db:
        row = db.execute("SELECT totp_last_step FROM users WHERE username = ?", (username,))
        found = row.fetchone()
    last = 0 if enrol or found is None else int(found[0])
    while True:
        now = time.time()
        current = int(now // 30)
        earliest = current - 1 if now % 30 < 20 else current  # keep off a step boundary
        step = max(last + 1, earliest)
        if step <= current + 1:
            return pyotp.TOTP(secret).at(step * 30)
        time.sleep(0.5)


def member_sign_in(page: Page, stack: Stack, handle: str, secret: str | None = None) -> str:
    """A member through the OIDC provider and TOTP (enrolling the first time); the secret."""
    page.goto(f"{stack.dashboard_url}/login")
    page.click("#oidc-login")
    page.wait_for_url(f"{stack.provider_url}**")
    page.fill("#user_login", handle)
    page.fill("#user_pass", stack.passwords[handle])
    page.click("#wp-submit")
    if secret is None:
        page.wait_for_url(f"{stack.dashboard_url}/2fa/enrol")
        secret = page.inner_text("#totp-secret").strip()
        page.fill("#code", code(stack, handle, secret, enrol=True))
        page.click("text=Turn on two-factor sign-in")
        expect(page.locator("#recovery-codes code")).to_have_count(10)
        page.click("text=I saved them")
        page.wait_for_url(f"{stack.dashboard_url}/wallet")
    else:
        page.wait_for_url(f"{stack.dashboard_url}/2fa")
        page.fill("#code", code(stack, handle, secret))
        page.click("text=Continue")
    return secret


def open_member(page: Page, stack: Stack, handle: str) -> None:
    page.goto(f"{stack.dashboard_url}/owner/members")
    page.click(f"#members tr[data-handle='{handle}'] a")
    expect(page.locator("h1")).to_contain_text(f"Member {handle}")


def test_every_owner_page_opens_and_a_member_gets_404(
    owner: tuple[Page, str], browser: Browser, stack: Stack, shots: Path
) -> None:
    page, _ = owner
    for index, path in enumerate(OWNER_PAGES[1:], start=2):
        answer = page.goto(f"{stack.dashboard_url}{path}")
        assert answer is not None and answer.status == 200, path
        shot(page, shots, f"owner-0{index}-{path.rsplit('/', 1)[1]}")
    open_member(page, stack, "noah")
    shot(page, shots, "owner-05-member")
    phone = browser.new_context(
        viewport={"width": 375, "height": 800}, storage_state=page.context.storage_state()
    ).new_page()
    phone.goto(f"{stack.dashboard_url}/owner/members/{stack.member_ids['noah']}")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the member page scrolls sideways on a phone ({width}px)"
    shot(phone, shots, "owner-06-member-phone")
    phone.context.close()

    member = new_page(browser)
    member_sign_in(member, stack, "mia")
    token = member.locator("input[name=csrf_token]").first.get_attribute("value")
    mia = stack.member_ids["mia"]
    for path in [*OWNER_PAGES, f"/owner/members/{mia}", "/owner"]:
        refused = member.goto(f"{stack.dashboard_url}{path}")
        assert refused is not None and refused.status == 404, path
    posted = member.request.post(
        f"{stack.dashboard_url}/owner/members/{mia}/unfreeze",
        form={"csrf_token": token or "", "reason": "let me out"},
        max_redirects=0,
    )
    assert posted.status == 404
    shot(member, shots, "owner-07-member-refused-404")
    member.context.close()


def test_a_frozen_member_is_signed_out_and_refused_by_dashboard_and_exchange(
    owner: tuple[Page, str], browser: Browser, stack: Stack, shots: Path
) -> None:
    page, _ = owner
    member = new_page(browser)
    secret = member_sign_in(member, stack, "mia") if not known(stack, "mia") else None
    if secret is None:  # enrolled by the previous test: sign in with a fresh code
        secret = member_secret(stack, "mia")
        member_sign_in(member, stack, "mia", secret)
    member.wait_for_url(f"{stack.dashboard_url}/wallet")

    with sqlite3.connect(stack.database) as db:
        (signed_in,) = db.execute(
            "SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id"
            " WHERE u.member_handle = 'mia' AND s.stage = 'full'"
        ).fetchone()
    assert signed_in >= 1
    open_member(page, stack, "mia")
    page.fill("#freeze-reason", "phone reported stolen")
    page.click("#freeze-form button[type=submit]")
    ended = f"mia frozen; {signed_in} dashboard session(s) ended"
    expect(page.locator("#notice")).to_contain_text(ended)
    expect(page.locator("#member-frozen")).to_be_visible()
    shot(page, shots, "owner-08-member-frozen")

    # the member's open session is gone, and signing in again is refused after the code
    member.goto(f"{stack.dashboard_url}/wallet")
    member.wait_for_url(f"{stack.dashboard_url}/login")
    member_sign_in(member, stack, "mia", secret)
    expect(member.locator("h1")).to_have_text("Account frozen")
    # the exchange refuses the member's own API calls that move money
    headers = {"Authorization": f"Bearer {stack.member_token('mia')}"}
    order = httpx.post(
        f"{stack.exchange.url}/api/orders", headers=headers, timeout=10,
        json={"side": "buy", "type": "limit", "price": 1_000, "quantity": 1},
    ).json()  # fmt: skip
    assert order.get("reject_reason") == "member_frozen" or "frozen" in str(order)
    member.context.close()

    page.goto(f"{stack.dashboard_url}/owner/audit?member=mia&event=freeze")
    expect(page.locator("#audit")).to_contain_text(f"by {OWNER}")
    expect(page.locator("#audit")).to_contain_text("phone reported stolen")
    page.goto(f"{stack.dashboard_url}/owner/audit?source=dashboard&event=login_refused_frozen")
    expect(page.locator("#audit .event")).to_have_text(["login_refused_frozen"])


def test_adjust_then_approve_a_large_withdrawal_paid_by_the_node_wallet(
    owner: tuple[Page, str], browser: Browser, stack: Stack, shots: Path
) -> None:
    page, owner_secret = owner
    open_member(page, stack, "noah")
    page.select_option("#adjust-asset", "SATS")
    page.fill("#adjust-amount", "1,000,000")
    page.fill("#adjust-reason", "cash paid in at the meetup")
    page.fill("#adjust-code", "000000")  # a wrong code books nothing
    page.click("#adjust-form button[type=submit]")
    expect(page.locator("#error")).to_contain_text("Wrong or already used code")
    page.select_option("#adjust-asset", "SATS")
    page.fill("#adjust-amount", "1,000,000")
    page.fill("#adjust-reason", "cash paid in at the meetup")
    page.fill("#adjust-code", code(stack, OWNER, owner_secret))
    page.click("#adjust-form button[type=submit]")
    expect(page.locator("#notice")).to_contain_text("Credit of 1,000,000 SATS booked")
    expect(page.locator("#balances tr[data-asset=SATS] .total")).to_have_text("1,000,000")
    expect(page.locator("#member-audit")).to_contain_text("cash paid in at the meetup")

    # noah sees the reason in the wallet history, then asks for more than the approval limit
    member = new_page(browser)
    secret = member_sign_in(member, stack, "noah")
    expect(member.locator("#history")).to_contain_text("cash paid in at the meetup")
    node = stack.chain.node
    node.pay(node.rpc("getnewaddress", wallet="wallet"), 1_000_000)
    node.mine(1)
    outside = node.rpc("getnewaddress", wallet="outside")
    member.goto(f"{stack.dashboard_url}/wallet/withdraw")
    member.fill("#address", outside)
    member.fill("#amount", f"{APPROVAL_ABOVE + 100_000:,}")
    member.fill("#code", code(stack, "noah", secret))
    member.click("#withdraw-form button[type=submit]")
    expect(member.locator("#withdrawal-done")).to_contain_text("awaiting_approval")
    member.context.close()

    page.goto(f"{stack.dashboard_url}/owner/funds")
    card = page.locator("#approvals article[data-withdrawal]")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("600,000 SATS for noah")
    shot(page, shots, "owner-09-funds-approval")
    card.locator("input[name=reason]").first.fill("known member, called back")
    card.locator("input[name=code]").first.fill(code(stack, OWNER, owner_secret))
    card.locator(".approve-form button[type=submit]").click()
    expect(page.locator("#notice")).to_contain_text("approved")

    def paid() -> bool:
        return any(
            out.get("address") == outside
            for tx in stack.chain.wallet_sends()
            for out in node.rpc("gettransaction", tx["txid"], wallet="wallet")["details"]
        )

    wait_until("the approved withdrawal paid by the node wallet", paid, stack.logs(), every=0.3)
    page.goto(f"{stack.dashboard_url}/owner/audit?member=noah&event=adjust")
    expect(page.locator("#audit")).to_contain_text("cash paid in at the meetup")
    expect(page.locator("#audit")).to_contain_text(f"by {OWNER}")
    page.goto(f"{stack.dashboard_url}/owner/audit?source=dashboard&member={OWNER}")
    events = page.locator("#audit .event").all_inner_texts()
    assert {"owner_adjust", "owner_code_failed", "owner_withdrawal_approve"} <= set(events)
    shot(page, shots, "owner-10-audit")


def test_components_show_versions_and_a_stopped_api_as_down(
    owner: tuple[Page, str], stack: Stack, shots: Path
) -> None:
    page, _ = owner
    page.goto(f"{stack.dashboard_url}/owner/components")
    chain = page.locator(".component[data-kind=chain_api]")
    expect(chain).to_have_attribute("data-state", "up")
    expect(chain).to_contain_text("blocks / headers")
    expect(chain).to_contain_text("SIMULATION")  # the stand-in's daemon version says so
    expect(page.locator(".component[data-kind=exchange]")).to_have_attribute("data-state", "up")
    expect(page.locator(".component[data-kind=lightning_api]")).to_have_attribute(
        "data-state", "not configured"
    )
    expect(page.locator(".component[data-kind=disk]")).to_contain_text("used")

    api = stack.chain.api
    assert api is not None and api.proc is not None
    api.kill9()  # stopped hard (the exchange's event stream would hold a graceful stop)
    answer = page.goto(f"{stack.dashboard_url}/owner/components")
    assert answer is not None and answer.status == 200
    expect(chain).to_have_attribute("data-state", "down")
    expect(chain).to_contain_text("no answer")
    shot(page, shots, "owner-11-components-down")


def known(stack: Stack, handle: str) -> bool:
    with sqlite3.connect(stack.database) as db:
        row = db.execute(
            "SELECT totp_secret FROM users WHERE member_handle = ?", (handle,)
        ).fetchone()
    return row is not None and row[0] is not None


def member_secret(stack: Stack, handle: str) -> str:
    """The member's TOTP secret as the dashboard stored it (what their phone holds)."""
    with sqlite3.connect(stack.database) as db:
        row = db.execute(
            "SELECT totp_secret FROM users WHERE member_handle = ?", (handle,)
        ).fetchone()
    return str(row[0])
