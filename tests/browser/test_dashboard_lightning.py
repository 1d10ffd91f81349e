"""Lightning on the member's wallet page and the owner's own account page, in a real browser
(Debian's Chromium, headless) against a stack with Lightning: the exchange's LaaS in front of a
Lightning API and a simnet lightningd with a channel to the simulated SC Cluster hub.

A member creates a deposit invoice on the wallet page (shown as text and QR code), the outside
world pays it through the hub, and the page shows it paid with the balance grown by exactly the
invoice's amount; a double submit of one form makes one invoice. The owner opens /account
(2FA, sessions) and changes the password after a re-auth, which ends the owner's other session.
Screenshots and the axe-core check as in the other browser tests."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.stack import Stack, wait_until
from tests.browser.test_member_dashboard import shot  # screenshot + axe-core check
from tests.browser.test_owner_dashboard import code, member_sign_in, new_page

MEMBERS = ["lena", "omar"]
OWNER = "oscar"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="scnode-ln-"))
    running = Stack(root, owner=OWNER, lightning=True)
    try:
        yield running.start(MEMBERS)
    finally:
        running.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = new_page(browser)
    try:
        yield opened
    finally:
        opened.context.close()


def available_sats(page: Page) -> int:
    """The wallet page's available SATS (0 while the member has none)."""
    cell = page.locator("#balances tr[data-asset=SATS] .available")
    if cell.count() == 0:
        return 0
    return int(cell.inner_text().replace(",", "").strip())


def create_invoice(page: Page, amount: int, memo: str) -> tuple[str, str]:
    """The wallet page's Lightning form sent; (payment hash, bolt11) of the invoice shown."""
    page.fill("#ln-amount", str(amount))
    page.fill("#ln-memo", memo)
    page.click("#lightning-form button[type=submit]")
    shown = page.locator("#lightning-invoice")
    expect(shown).to_be_visible()
    return str(shown.get_attribute("data-payment-hash")), page.inner_text(
        "#lightning-invoice code.bolt11"
    ).strip()


def test_member_lightning_deposit_is_credited_once_by_its_amount(
    page: Page, stack: Stack, shots: Path
) -> None:
    assert stack.ln_hub is not None
    member_sign_in(page, stack, "lena")
    page.goto(f"{stack.dashboard_url}/wallet")
    expect(page.locator("#lightning-form")).to_be_visible()
    expect(page.locator("#lightning-off")).to_have_count(0)

    # a first deposit, so the second one starts from a balance that is not zero
    first_hash, first = create_invoice(page, 21_000, "first")
    stack.ln_hub.pay_from_outside(first)

    def credited(payment_hash: str, balance: int) -> bool:
        page.goto(f"{stack.dashboard_url}/wallet")
        row = page.locator(f"#lightning-invoices tr[data-payment-hash='{payment_hash}']")
        return row.locator(".status").inner_text() == "paid" and available_sats(page) == balance

    wait_until("first invoice paid", lambda: credited(first_hash, 21_000), stack.logs(), every=0.5)
    before = available_sats(page)

    payment_hash, bolt11 = create_invoice(page, 12_345, "coffee fund")
    assert bolt11.startswith("lnbcrt123450n")  # regtest, 12,345 sat
    expect(page.locator("#lightning-invoice .qr svg")).to_be_visible()
    expect(page.locator("#lightning-invoice")).to_contain_text("Pay before")
    row = page.locator(f"#lightning-invoices tr[data-payment-hash='{payment_hash}']")
    expect(row.locator(".status")).to_have_text("unpaid")
    expect(row).to_contain_text("coffee fund")
    shot(page, shots, "ln-01-wallet-invoice")

    stack.ln_hub.pay_from_outside(bolt11)
    wait_until(
        "second invoice paid on the page",
        lambda: credited(payment_hash, before + 12_345),
        stack.logs(),
        every=0.5,
    )
    row = page.locator(f"#lightning-invoices tr[data-payment-hash='{payment_hash}']")
    expect(row.locator(".credited")).to_have_text("12,345 sats")
    assert available_sats(page) == before + 12_345
    shot(page, shots, "ln-02-wallet-paid")

    # one form sent twice (a double click, a resend): the same idempotency key, one invoice
    page.goto(f"{stack.dashboard_url}/wallet")
    form: dict[str, str | float | bool] = {
        "csrf_token": page.locator("#lightning-form [name=csrf_token]").input_value(),
        "idempotency_key": page.locator("#lightning-form [name=idempotency_key]").input_value(),
        "amount": "777",
        "memo": "twice",
    }
    origin = {"Origin": stack.dashboard_url}
    places = []
    for _ in range(2):
        reply = page.request.post(
            f"{stack.dashboard_url}/wallet/lightning/invoices", form=form, headers=origin,
            max_redirects=0,
        )  # fmt: skip
        assert reply.status == 303, reply.text()
        places.append(reply.headers["location"])
    assert places[0] == places[1] and "invoice=" in places[0]
    page.goto(f"{stack.dashboard_url}/wallet")
    expect(page.locator("#lightning-invoices tr", has_text="twice")).to_have_count(1)
    # a form from another page's render is refused without its CSRF token
    refused = page.request.post(
        f"{stack.dashboard_url}/wallet/lightning/invoices",
        form={**form, "csrf_token": "forged"}, headers=origin, max_redirects=0,
    )  # fmt: skip
    assert refused.status == 403


def test_member_pays_an_invoice_with_a_code_and_is_charged_amount_plus_fee(
    page: Page, stack: Stack, shots: Path
) -> None:
    assert stack.ln_hub is not None
    secret = member_sign_in(page, stack, "omar")
    page.goto(f"{stack.dashboard_url}/wallet")
    deposit_hash, deposit = create_invoice(page, 30_000, "to spend")
    stack.ln_hub.pay_from_outside(deposit)

    def balance_is(sats: int) -> bool:
        page.goto(f"{stack.dashboard_url}/wallet")
        return available_sats(page) == sats

    wait_until("deposit credited", lambda: balance_is(30_000), stack.logs(), every=0.5)

    bolt11 = str(stack.ln_hub.make_outside_invoice(4_321_000, "outside shop")["bolt11"])
    page.click("#lightning-pay-link")
    page.wait_for_url(f"{stack.dashboard_url}/wallet/lightning/pay")
    page.fill("#bolt11", bolt11)
    page.click("#quote-form button[type=submit]")
    expect(page.locator("#quote-amount")).to_have_text("4,321 sats")
    max_fee = int(page.inner_text("#quote-max-fee").split()[0].replace(",", ""))
    assert max_fee > 0
    expect(page.locator("#quote-total")).to_have_text(f"{4_321 + max_fee:,} sats")
    shot(page, shots, "ln-04-pay-confirm")
    page.fill("#code", "000000")  # a wrong code: nothing is paid
    page.click("#pay-form button[type=submit]")
    expect(page.locator("#pay-error")).to_contain_text("Wrong or already used code")
    page.fill("#code", code(stack, "omar", secret))
    page.click("#pay-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/wallet/lightning/payments/\d+$"))
    # the page refreshes itself until the payment is final
    expect(page.locator("#payment")).to_have_attribute("data-state", "complete", timeout=45_000)
    fee = int(page.inner_text("#payment-fee").split()[0].replace(",", ""))
    assert 0 <= fee <= max_fee
    expect(page.locator("#payment-total")).to_have_text(f"{4_321 + fee:,} sats")
    shot(page, shots, "ln-05-payment-complete")
    assert balance_is(30_000 - 4_321 - fee), available_sats(page)
    # the outside world was paid once, exactly the invoice's amount
    (shop,) = [
        i for i in stack.ln_hub.control("GET", "/v1/outside/invoices")["invoices"]
        if i["bolt11"] == bolt11
    ]  # fmt: skip
    assert shop["status"] == "paid" and shop["amount_received_msat"] == 4_321_000
    row = page.locator(f"#lightning-invoices tr[data-payment-hash='{deposit_hash}']")
    expect(row.locator(".status")).to_have_text("paid")


def owner_password_sign_in(page: Page, stack: Stack, password: str) -> None:
    page.goto(f"{stack.dashboard_url}/login")
    page.fill("#username", OWNER)
    page.fill("#password", password)
    page.click("form[action='/login/local'] button[type=submit]")


def test_owner_account_page_sessions_and_password_change(
    browser: Browser, stack: Stack, shots: Path
) -> None:
    first, second = new_page(browser), new_page(browser)
    try:
        owner_password_sign_in(first, stack, stack.owner_password)
        first.wait_for_url(f"{stack.dashboard_url}/2fa/enrol")
        secret = first.inner_text("#totp-secret").strip()
        first.fill("#code", code(stack, OWNER, secret, enrol=True))
        first.click("text=Turn on two-factor sign-in")
        expect(first.locator("#recovery-codes code")).to_have_count(10)
        recovery = first.locator("#recovery-codes code").all_inner_texts()
        first.click("text=I saved them")
        first.wait_for_url(f"{stack.dashboard_url}/owner/members")

        # a second session of the owner (a recovery code instead of the phone)
        owner_password_sign_in(second, stack, stack.owner_password)
        second.wait_for_url(f"{stack.dashboard_url}/2fa")
        second.fill("#code", recovery[0])
        second.click("text=Continue")
        second.wait_for_url(f"{stack.dashboard_url}/owner/members")

        first.click("nav >> text=Account")
        first.wait_for_url(f"{stack.dashboard_url}/account")
        expect(first.locator("#two-factor")).to_contain_text("9 unused recovery codes")
        expect(first.locator("#sessions tbody tr")).to_have_count(2)
        expect(first.locator("#api-tokens")).to_have_count(0)  # members' only
        shot(first, shots, "ln-03-owner-account")

        # a new password needs a recent re-auth: the sign-in a moment ago counts (the unit
        # tests send the form after the re-auth ran out)
        expect(first.locator("#password")).not_to_contain_text("confirm it is you")
        new_password = stack.owner_password + "-changed"
        first.fill("#current", "not the password at all")
        first.fill("#new", new_password)
        first.fill("#repeat", new_password)
        first.click("#password-form button[type=submit]")
        expect(first.locator("#password-error")).to_contain_text("current password is wrong")
        first.fill("#current", stack.owner_password)
        first.fill("#new", new_password)
        first.fill("#repeat", new_password)
        first.click("#password-form button[type=submit]")
        expect(first.locator("#account-notice")).to_have_text("Password changed.")
        expect(first.locator("#sessions tbody tr")).to_have_count(1)

        # the other session ended; the old password no longer works, the new one does
        second.goto(f"{stack.dashboard_url}/owner/members")
        second.wait_for_url(f"{stack.dashboard_url}/login")
        owner_password_sign_in(second, stack, stack.owner_password)
        expect(second.locator(".error")).to_contain_text("Wrong username or password")
        owner_password_sign_in(second, stack, new_password)
        second.wait_for_url(f"{stack.dashboard_url}/2fa")
        second.fill("#code", recovery[1])
        second.click("text=Continue")
        second.wait_for_url(f"{stack.dashboard_url}/owner/members")
    finally:
        first.context.close()
        second.context.close()
