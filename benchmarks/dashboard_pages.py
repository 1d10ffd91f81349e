"""Benchmark of the member dashboard: page load times on loopback, signed in.

    .venv/bin/python benchmarks/dashboard_pages.py [--requests 50]

Starts the browser tests' stack (simnet chain + chain API + exchange + simnet OIDC provider +
dashboard), signs a member in over HTTP the way a browser does (provider login form, TOTP
enrolment), funds it with a deposit, then times GET of each member page (server time as the
client sees it: the dashboard's own work plus its calls to the exchange). Target (issue 10):
every page < 1 s on loopback. Prints; never fails.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pyotp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.browser.stack import CONFIRMATIONS, Stack, wait_until

PAGES = ["/login", "/wallet", "/wallet/withdraw", "/account", "/wallet/history.csv"]


def sign_in(stack: Stack, browser: httpx.Client, handle: str) -> None:
    start = browser.get(f"{stack.dashboard_url}/auth/oidc/start", follow_redirects=False)
    authorize = start.headers["location"]
    form = httpx.get(authorize).text
    hidden = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form))
    back = httpx.post(
        authorize.split("?")[0],
        data={**hidden, "log": handle, "pwd": stack.passwords[handle], "authorize": "Authorize"},
    )
    browser.get(back.headers["location"])  # callback → /2fa/enrol (redirects followed)
    page = browser.get(f"{stack.dashboard_url}/2fa/enrol").text
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert secret and token
    done = browser.post(
        f"{stack.dashboard_url}/2fa/enrol",
        data={"code": pyotp.TOTP(secret.group(1)).now(), "csrf_token": token.group(1)},
    )
    assert 'id="recovery-codes"' in done.text, done.text[:300]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="scnode-dashboard-bench-"))
    stack = Stack(root)
    try:
        started = time.perf_counter()
        stack.start(["alice"])
        print(f"stack up in {time.perf_counter() - started:.1f} s")
        browser = httpx.Client(follow_redirects=True, timeout=30)
        sign_in(stack, browser, "alice")
        wallet = browser.get(f"{stack.dashboard_url}/wallet").text
        address = re.search(r'class="address">([a-z0-9]+)<', wallet)
        assert address
        stack.chain.node.pay(address.group(1), 250_000)
        stack.chain.node.mine(CONFIRMATIONS)
        wait_until(
            "deposit credited",
            lambda: "250,000" in browser.get(urljoin(stack.dashboard_url, "/wallet")).text,
            stack.logs(),
        )
        print(f"{'page':24} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for path in PAGES:
            times = []
            for _ in range(args.requests):
                begin = time.perf_counter()
                reply = browser.get(f"{stack.dashboard_url}{path}")
                times.append((time.perf_counter() - begin) * 1000)
                assert reply.status_code == 200, (path, reply.status_code)
            times.sort()
            p95 = times[int(len(times) * 0.95) - 1]
            print(f"{path:24} {len(times):4} {statistics.median(times):8.1f} {p95:8.1f} "
                  f"{times[-1]:8.1f}")  # fmt: skip
        browser.close()
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
