"""Browser tests of the member dashboard: one stack (chain, chain API, exchange, OIDC
provider, dashboard) per session and Debian's Chromium driven headless by Playwright.
Screenshots go to tests/output/browser/."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from tests.browser.stack import Stack

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "output" / "browser"
MEMBERS = ["alice", "bob", "carol", "dave", "erin"]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="scnode-browser-"))
    running = Stack(root)
    try:
        yield running.start(MEMBERS)
    finally:
        running.stop()
        shutil.rmtree(root, ignore_errors=True)


# Module scope, not session: Playwright's sync API keeps an event loop running in this thread
# until it stops, and every later test on the same xdist worker that calls asyncio.run() would
# fail with "cannot be called from a running event loop".
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS
