"""The owner dashboard in the converged default lab, the way the technician reaches it after
`make lab`: https://127.0.0.1:8443/ (scnode_lab's forwarder to the reverse proxy on apps.lab),
the demo owner's local account with TOTP (made by `python -m scnode_lab demo`, credentials in
.lab/credentials/dashboard-owner.json), in Debian's Chromium. The components page asks every API
of the node with the read keys the apps role copied to the dashboard; the members page lists the
demo members through the dashboard's owner-scoped exchange key."""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from scnode_lab import demo, forward
from scnode_lab.pytest_plugin import ConvergedLab

pytestmark = [
    pytest.mark.testhosts,
    pytest.mark.xdist_group("default-lab"),
    pytest.mark.timeout(2700),
]

DASHBOARD = "https://127.0.0.1:8443"
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "output" / "lab-owner"
DATABASE = "/var/lib/scnode/dashboard/dashboard.sqlite3"
# what the lab's components page asks (inventories/lab/group_vars/apps.yml: the exchange's APIs)
PROBED = {
    ("exchange", "Exchange"),
    ("chain_api", "Chain API bitcoin"),
    ("chain_api", "Chain API azcoin"),
    ("stratum", "Stratum stats btc"),
    ("stratum", "Stratum stats azc"),
    ("lightning_api", "Lightning API"),
    ("disk", "Disk /"),
}


@pytest.fixture(scope="module")
def lab(converged_lab: ConvergedLab) -> Iterator[ConvergedLab]:
    state = converged_lab.lab.load()
    assert state is not None
    hosts = {h.name: h.ip for h in state.spec.hosts}
    print(forward.ensure(converged_lab.name, converged_lab.lab.state_dir, hosts))
    yield converged_lab


def _last_step(lab: ConvergedLab, username: str) -> int:
    """The owner's last used TOTP step (a code works once), read as the database's owner."""
    code = (
        "import sqlite3, sys; "
        "db = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True); "
        "print(db.execute('SELECT totp_last_step FROM users WHERE username = ?', "
        "(sys.argv[2],)).fetchone()[0])"
    )
    argv = ["runuser", "-u", "scnode-dashboard", "--", "python3", "-c", code, DATABASE, username]
    return int(lab.on("apps", "cd / && " + shlex.join(argv)).strip())


def _code(lab: ConvergedLab, username: str, secret: str) -> str:
    """A code the dashboard accepts now and that was not used yet (off a step boundary)."""
    last = _last_step(lab, username)
    while True:
        now = time.time()
        current = int(now // 30)
        step = max(last + 1, current - 1 if now % 30 < 20 else current)
        if step <= current + 1:
            return demo.totp_now(secret, step * 30)
        time.sleep(0.5)


def test_demo_owner_credentials_are_private_and_printed(lab: ConvergedLab) -> None:
    path = demo.CREDENTIALS / demo.OWNER_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    owner = demo.owner_credentials()
    assert owner is not None and owner["username"] == demo.OWNER
    facts = demo.load_facts(lab.lab)
    text = demo.summary(lab.lab, facts)
    assert f"demo owner {demo.OWNER} / {owner['password']}" in text
    assert "demo owner-code" in text
    # the owner pages' exchange key is on the node only: in the settings, not in any output
    settings = lab.on("apps", "stat -c '%a %U %G' /etc/scnode/dashboard/settings.env").split()
    assert settings == ["640", "root", "scnode-dashboard"]
    names = lab.on("apps", "sed 's/=.*/=/' /etc/scnode/dashboard/settings.env").split()
    # the settings name the key files (the rotation rewrites them); no key in the settings
    assert "SCNODE_DASHBOARD_EXCHANGE_OWNER_API_KEY_FILE=" in names
    assert "SCNODE_DASHBOARD_EXCHANGE_OWNER_API_KEY=" not in names
    tokens = lab.on("apps", "stat -c '%a %U %G' /etc/scnode/dashboard/client-keys/*.token")
    assert tokens.split() == ["640", "root", "scnode-dashboard"] * 2, tokens
    keys = lab.on("apps", "stat -c '%a %U %G %n' /etc/scnode/dashboard/client-keys/*.key")
    rows = [line.split() for line in keys.splitlines()]
    assert len(rows) == 5, keys  # two chain APIs, two stats APIs, the Lightning API
    assert all(r[:3] == ["640", "root", "scnode-dashboard"] for r in rows), keys


def test_owner_signs_in_and_sees_every_component_and_the_members(lab: ConvergedLab) -> None:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (apt-get install chromium)")
    owner = demo.owner_credentials()
    assert owner is not None, "no demo owner: python -m scnode_lab demo"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = browser.new_context(ignore_https_errors=True)  # self-signed in the lab
            page = context.new_page()
            page.goto(f"{DASHBOARD}/login")
            page.fill("#username", owner["username"])
            page.fill("#password", owner["password"])
            page.click("form[action='/login/local'] button[type=submit]")
            page.wait_for_url(f"{DASHBOARD}/2fa")
            page.fill("#code", _code(lab, owner["username"], owner["totp_secret"]))
            page.click("text=Continue")
            page.wait_for_url(re.compile(r"^https://127\.0\.0\.1:8443/owner(/.*)?$"))

            page.goto(f"{DASHBOARD}/owner/members")
            for handle in demo.MEMBERS:
                expect(page.locator(f"#members tr[data-handle='{handle}']")).to_have_count(1)
            page.screenshot(path=str(SHOTS / "owner-members.png"), full_page=True)

            page.goto(f"{DASHBOARD}/owner/components")
            expect(page.locator("h1")).to_have_text("Components")
            page.screenshot(path=str(SHOTS / "owner-components.png"), full_page=True)
            cards = page.locator("section.component")
            found = {
                (
                    cards.nth(i).get_attribute("data-kind"),
                    cards.nth(i).inner_text().split("\n")[0],
                ): cards.nth(i).get_attribute("data-state")
                for i in range(cards.count())
            }
        finally:
            browser.close()
    print(found)
    assert {k: found.get(k) for k in PROBED} == dict.fromkeys(PROBED, "up"), found
    # what the lab cannot show: no backup_timer run, no keys file the dashboard may read
    assert found.get(("backup", "Backups")) == "not configured", found
    assert found.get(("api_keys", "API keys")) == "not configured", found
