"""Benchmark of the member dashboard: page load times on loopback, signed in.

    .venv/bin/python benchmarks/dashboard_pages.py [--requests 50]

Starts the browser tests' stack (simnet chain + chain API + exchange + simnet OIDC provider +
dashboard), signs a member in over HTTP the way a browser does (provider login form, TOTP
enrolment), funds it with a deposit, then times GET of each member page (server time as the
client sees it: the dashboard's own work plus its calls to the exchange). The exchange page
has a book and some trades to show; the mining page asks a stratum stats API (following a
synthetic translator log) about four registered workers. Target (issue 10): every page < 1 s
on loopback. Prints; never fails.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
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
from scnode_stratum import synthetic
from tests.browser.stack import CONFIRMATIONS, Stack, wait_until
from tests.integration.stratum.stratum_handle import StratumApi

PAGES = [
    "/login", "/wallet", "/wallet/withdraw", "/account", "/wallet/history.csv",
    "/trade", "/trade/history", "/mining", "/account/tokens",
]  # fmt: skip
WORKERS = ["alice.rig1", "alice.rig2", "alice.rig3", "alice.rig4"]


def market_and_miners(stack: Stack) -> None:
    """A book and ten trades (bob sells to alice), four registered workers of alice."""
    owner = {"X-API-Key": stack.exchange.owner_key}
    bob_id = stack.member_ids["bob"]
    httpx.post(
        f"{stack.exchange.url}/api/owner/members/{bob_id}/adjustments", headers=owner,
        json={"asset": "AZC", "amount": 10**9, "reason": "bench",
              "idempotency_key": secrets.token_hex(8)},
    ).raise_for_status()  # fmt: skip
    alice = {"Authorization": f"Bearer {stack.member_token('alice')}"}
    bob = {"Authorization": f"Bearer {stack.member_token('bob')}"}
    orders = f"{stack.exchange.url}/api/orders"
    for i in range(10):
        for who, side in ((bob, "sell"), (alice, "buy")):
            order = {"side": side, "type": "limit", "price": 1_000 + 10 * i, "quantity": 1}
            httpx.post(orders, headers=who, json=order).raise_for_status()
    for i in range(20):
        order = {"side": "sell", "type": "limit", "price": 2_000 + 10 * i, "quantity": 2}
        httpx.post(orders, headers=bob, json=order).raise_for_status()
    for name in WORKERS:
        httpx.post(
            f"{stack.exchange.url}/v1/mining/workers", headers=alice,
            json={"pool": "btc", "name": name},
        ).raise_for_status()  # fmt: skip


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
    (root / "stratum").mkdir()
    log = root / "stratum" / "translator.log"
    log.write_text("\n".join(synthetic.session(WORKERS, 200, time.time() - 60)) + "\n")
    stats = StratumApi(root / "stratum", log)
    stats.write_config()
    stack = Stack(root)
    stack.dashboard_env = {
        "STRATUM_APIS": json.dumps({"btc": {"url": stats.url, "key": stats.token}})
    }
    try:
        started = time.perf_counter()
        stats.start(timeout=90)
        stack.start(["alice", "bob"])
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
        market_and_miners(stack)
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
        stats.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
