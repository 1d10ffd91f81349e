"""The member dashboard's exchange, mining and API-token pages in a real browser (Debian's
Chromium, headless) against real processes: chain + chain API + exchange + OIDC provider +
dashboard (``stack.py``) plus a stratum stats API following a translator log this test writes.

A member places and cancels an order; two members' crossing orders trade and the trade reaches
the other member's open exchange page over the WebSocket (no reload); the mining page shows
the member's registered workers with upstream's states; another member's order and token
answer 404; a token made on the account page works against the exchange API within its scopes
and stops when revoked. Screenshots (with an axe-core check each) land in
tests/output/browser/; a phone-sized screen has no horizontal overflow."""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect

from scnode_stratum import synthetic
from tests.browser.stack import Stack, wait_until
from tests.browser.test_member_dashboard import enrol, next_code, shot
from tests.integration.stratum.stratum_handle import StratumApi

PRICE = 1_000  # sats per lot
NOW_WORKERS = {"alice.rig1": 5, "alice.rig2": 200, "alice.rig3": 1_000}  # last share age (s)
WORKERS = [*NOW_WORKERS, "bob.rig1"]  # translator channels 1..4


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """The browser stack with a stratum stats API (btc) following a translator log where
    three of alice's workers and one of bob's connected (the mining test adds their shares)."""
    root = Path(tempfile.mkdtemp(prefix="scnode-trading-"))
    (root / "stratum").mkdir()
    log = root / "stratum" / "translator.log"
    lines = synthetic.start_lines(time.time() - 1_200)
    for channel, name in enumerate(WORKERS, start=1):
        lines += synthetic.connect_lines(channel, name, time.time() - 1_200)
    log.write_text("\n".join(lines) + "\n")
    stats = StratumApi(root / "stratum", log)
    stats.write_config()
    running = Stack(root)
    running.dashboard_env = {
        "STRATUM_APIS": json.dumps({"btc": {"url": stats.url, "key": stats.token}}),
        "STRATUM_HOST": "node.example",
    }
    try:
        stats.start(timeout=90)
        yield running.start(["alice", "bob"])
    finally:
        running.stop()
        stats.stop()
        shutil.rmtree(root, ignore_errors=True)


def _owner(stack: Stack) -> httpx.Client:
    return httpx.Client(
        base_url=stack.exchange.url, headers={"X-API-Key": stack.exchange.owner_key}, timeout=10
    )


def _fund(stack: Stack, handle: str, asset: str, amount: int) -> None:
    with _owner(stack) as owner:
        reply = owner.post(
            f"/api/owner/members/{stack.member_ids[handle]}/adjustments",
            json={"asset": asset, "amount": amount, "reason": "test funds",
                  "idempotency_key": secrets.token_hex(8)},
        )  # fmt: skip
        assert reply.status_code == 201, reply.text


@pytest.fixture(scope="module")
def members(stack: Stack, browser: Browser, shots: Path) -> Iterator[dict[str, Any]]:
    """alice and bob signed in (OIDC + TOTP enrolment), each in a browser context; funded."""
    _fund(stack, "alice", "SATS", 1_000_000)
    _fund(stack, "bob", "AZC", 100_000_000)
    out: dict[str, Any] = {}
    contexts: list[BrowserContext] = []
    for handle in ("alice", "bob"):
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []  # console errors, e.g. a CSP refusal of the chart library
        page.on("console", _collector(errors))
        secret, _ = enrol(page, stack, handle)
        out[handle] = {"page": page, "secret": secret, "context": context, "errors": errors}
    try:
        yield out
    finally:
        for context in contexts:
            context.close()


def _collector(errors: list[str]) -> Callable[[ConsoleMessage], None]:
    def collect(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    return collect


def _place(page: Page, side: str, price: int, lots: int) -> int:
    page.check(f"input[name=side][value={side}]")
    page.fill("#price", f"{price:,}")
    page.fill("#quantity", str(lots))
    page.click("#order-form button[type=submit]")
    expect(page.locator("#placed")).to_be_visible()
    return int(page.inner_text("#placed").split()[1])


def test_place_and_cancel_an_order(stack: Stack, members: dict[str, Any], shots: Path) -> None:
    page: Page = members["alice"]["page"]
    page.goto(f"{stack.dashboard_url}/trade")
    expect(page.locator("#chart-status")).to_contain_text("Live")
    shot(page, shots, "20-trade")
    order_id = _place(page, "buy", 900, 3)
    row = page.locator(f"#open-orders tr[data-order='{order_id}']")
    expect(row).to_contain_text("900")
    expect(page.locator("#bids")).to_contain_text("900")
    # 3 lots at 900 are held: 2,700 sats (+ the taker fee reserve) not available any more
    held = page.inner_text("#trade-balances")
    assert "2,7" in held, held
    row.get_by_role("button", name=f"Cancel order {order_id}").click()
    expect(page.locator("#cancelled")).to_contain_text(str(order_id))
    expect(page.locator(f"#open-orders tr[data-order='{order_id}']")).to_have_count(0)
    # a price that is not a whole number is refused with a reason, nothing placed
    page.fill("#price", "12.5")
    page.fill("#quantity", "1")
    page.click("#order-form button[type=submit]")
    expect(page.locator("#order-error")).to_contain_text("whole number")


def test_a_trade_reaches_the_chart_live(stack: Stack, members: dict[str, Any], shots: Path) -> None:
    watcher: Page = members["alice"]["page"]
    watcher.goto(f"{stack.dashboard_url}/trade")
    expect(watcher.locator("#chart-status")).to_contain_text("Live")
    before = int(watcher.get_attribute("#chart", "data-trades") or "0")
    watcher.evaluate("window.__noReload = true")
    bob: Page = members["bob"]["page"]
    bob.goto(f"{stack.dashboard_url}/trade")
    _place(bob, "sell", PRICE, 2)
    # alice crosses it from another tab: the watching tab stays as it is
    taker = members["alice"]["context"].new_page()
    taker.goto(f"{stack.dashboard_url}/trade")
    _place(taker, "buy", PRICE, 2)
    taker.close()
    chart = watcher.locator("#chart")
    expect(chart).to_have_attribute("data-trades", str(before + 1), timeout=15_000)
    expect(chart).to_have_attribute("data-last", str(PRICE))
    expect(watcher.locator("#recent-trades tbody tr").first).to_contain_text("1,000")
    assert watcher.evaluate("window.__noReload") is True  # same document: no reload
    assert int(watcher.get_attribute("#chart", "data-candles") or "0") >= 1
    shot(watcher, shots, "21-trade-after-live-fill")
    csp = [e for e in members["alice"]["errors"] if "Content Security Policy" in e]
    assert not csp, csp
    # the relay is only for signed-in members of this dashboard's origin
    ws_url = stack.dashboard_url.replace("http", "ws") + "/trade/ws?market=AZC/SATS&interval=1m"
    opens = (
        "url => new Promise(done => { const w = new WebSocket(url);"
        " w.onopen = () => { w.close(); done('open'); }; w.onclose = () => done('refused'); })"
    )
    assert watcher.evaluate(opens, ws_url) == "open"
    stranger = watcher.context.browser.new_page()  # type: ignore[union-attr]
    stranger.goto(f"{stack.dashboard_url}/login")
    assert stranger.evaluate(opens, ws_url) == "refused"  # no session
    stranger.close()
    watcher.goto(stack.provider_url)  # another site, with alice's dashboard cookie in the jar
    assert watcher.evaluate(opens, ws_url) == "refused"  # foreign Origin
    watcher.goto(f"{stack.dashboard_url}/trade/history")
    expect(watcher.locator("#my-trades")).to_contain_text("buy")
    expect(watcher.locator("#public-trades")).to_contain_text("1,000")
    shot(watcher, shots, "22-trade-history")


def test_mining_page_lists_own_workers_with_states(
    stack: Stack, members: dict[str, Any], shots: Path
) -> None:
    token = stack.member_token("alice")
    for name in [*NOW_WORKERS, "alice.idle"]:
        reply = httpx.post(
            f"{stack.exchange.url}/v1/mining/workers", json={"pool": "btc", "name": name},
            headers={"Authorization": f"Bearer {token}"}, timeout=10,
        )  # fmt: skip
        assert reply.status_code == 201, reply.text
    # each worker's last share, aged from now (the log is in time order: oldest first)
    now = time.time()
    ages = sorted(
        ((NOW_WORKERS.get(n, 5), c) for c, n in enumerate(WORKERS, start=1)), reverse=True
    )
    lines = [line for age, channel in ages for line in synthetic.share_lines(channel, 1, now - age)]
    with open(stack.root / "stratum" / "translator.log", "a") as log:
        log.write("\n".join(lines) + "\n")
    page: Page = members["alice"]["page"]
    page.goto(f"{stack.dashboard_url}/mining")
    expected = {"alice.rig1": "ok", "alice.rig2": "low", "alice.rig3": "off", "alice.idle": "dis"}

    def states() -> dict[str, str]:
        rows = page.locator("#workers tbody tr[data-worker]")
        return {
            rows.nth(i).get_attribute("data-worker") or "": rows.nth(i)
            .locator(".state")
            .inner_text()
            for i in range(rows.count())
        }

    # the stats API may still be reading the log when the page is first asked
    def ready() -> bool:
        if states() == expected:
            return True
        page.reload()
        return False

    wait_until("worker states on the mining page", ready, stack.logs(), timeout=30, every=1)
    assert "bob.rig1" not in page.inner_text("#workers")
    expect(page.locator(".histogram svg rect").first).to_be_attached()
    expect(page.locator("#connect-btc")).to_contain_text("stratum+tcp://node.example:3333")
    expect(page.locator("#connect-azc")).to_contain_text("stratum+tcp://node.example:3336")
    shot(page, shots, "23-mining")


def test_tokens_work_until_revoked_and_stay_private(
    stack: Stack, members: dict[str, Any], shots: Path
) -> None:
    alice: Page = members["alice"]["page"]
    alice.goto(f"{stack.dashboard_url}/account/tokens")
    alice.fill("#token-name", "phone")
    alice.check("input[name=scopes][value=trade]")
    totp = pyotp.TOTP(members["alice"]["secret"])
    near = {totp.at(time.time() + d) for d in (-30, 0, 30, 60)}
    alice.fill("#token-code", next(c for c in ("000000", "111111", "222222") if c not in near))
    alice.click("#token-form button[type=submit]")
    expect(alice.locator("#token-error")).to_contain_text("Wrong")  # a fresh code is required
    alice.fill("#token-name", "phone")
    alice.fill("#token-code", next_code(members["alice"]["secret"]))
    alice.click("#token-form button[type=submit]")
    expect(alice.locator("#new-token")).to_be_visible()
    shot(alice, shots, "24-api-token-made")
    token = alice.inner_text("#token-value").strip()
    token_id = token.split(".")[1]
    api = httpx.Client(
        base_url=stack.exchange.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert api.get("/api/auth/me").json()["username"] == "alice"
    order = {"side": "buy", "type": "limit", "price": 10, "quantity": 1}
    placed = api.post("/api/orders", json=order)
    assert placed.status_code == 201, placed.text
    assert api.post("/v1/mining/workers", json={"pool": "btc", "name": "x"}).status_code == 403

    # bob can see neither alice's order nor her token, and cannot revoke it
    bob: Page = members["bob"]["page"]
    missing = bob.goto(f"{stack.dashboard_url}/orders/{placed.json()['id']}")
    assert missing is not None and missing.status == 404
    bob.goto(f"{stack.dashboard_url}/account/tokens")
    assert "phone" not in bob.inner_text("#tokens")
    csrf = bob.get_attribute("#token-form input[name=csrf_token]", "value")
    status = bob.evaluate(
        "([id, csrf]) => fetch(`/account/tokens/${id}/revoke`, {method: 'POST',"
        " headers: {'X-CSRF-Token': csrf}}).then(r => r.status)",
        [token_id, csrf],
    )
    assert status == 404
    assert api.get("/api/balances").status_code == 200

    alice.goto(f"{stack.dashboard_url}/account/tokens")
    alice.get_by_role("button", name="Revoke token phone").click()
    expect(alice.locator(f"#tokens tr[data-token='{token_id}']")).to_contain_text("revoked")
    shot(alice, shots, "25-api-tokens")
    assert api.get("/api/balances").status_code == 401
    api.close()


def test_phone_sized_screens_do_not_overflow(
    stack: Stack, members: dict[str, Any], shots: Path
) -> None:
    state = members["alice"]["context"].storage_state()
    context = members["alice"]["page"].context.browser.new_context(
        viewport={"width": 360, "height": 740}, storage_state=state
    )
    try:
        page = context.new_page()
        for path, name in (("/trade", "26-phone-trade"), ("/mining", "27-phone-mining"),
                           ("/account/tokens", "28-phone-tokens")):  # fmt: skip
            page.goto(f"{stack.dashboard_url}{path}")
            page.wait_for_load_state("load")
            wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert wide <= 0, f"{path} overflows by {wide}px"
            shot(page, shots, name)
    finally:
        context.close()
