"""Benchmark of the owner dashboard: page load times on loopback, signed in as the owner.

    .venv/bin/python benchmarks/owner_dashboard_pages.py [--requests 30]

Starts the browser tests' stack with an owner account (``add-local-user --owner``), signs the
owner in over HTTP the way a browser does (local login form, TOTP enrolment), gives the
exchange some members with balances, owner actions and one withdrawal waiting for approval,
then times GET of each owner page (server time as the client sees it: the dashboard's work
plus its calls to the exchange's owner API, and for /owner/components the probes of the chain
API, the exchange and the disk). Target (issue 10): every page < 1 s on loopback. Prints;
never fails.
"""

from __future__ import annotations

import argparse
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pyotp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.browser.stack import APPROVAL_ABOVE, Stack

MEMBERS = [f"m{i:02d}" for i in range(20)]


def sign_in(stack: Stack, browser: httpx.Client) -> None:
    page = browser.get(f"{stack.dashboard_url}/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    enrol = browser.post(
        f"{stack.dashboard_url}/login/local",
        data={"username": stack.owner, "password": stack.owner_password,
              "csrf_token": token.group(1)},
    ).text  # fmt: skip
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', enrol)
    token = re.search(r'name="csrf_token" value="([^"]+)"', enrol)
    assert secret and token, enrol[:300]
    done = browser.post(
        f"{stack.dashboard_url}/2fa/enrol",
        data={"code": pyotp.TOTP(secret.group(1)).now(), "csrf_token": token.group(1)},
    )
    assert 'id="recovery-codes"' in done.text, done.text[:300]


def some_history(stack: Stack) -> int:
    """Balances and owner actions for every member, a waiting withdrawal; a member id."""
    owner = {"X-API-Key": stack.exchange.owner_key}
    for handle, member_id in stack.member_ids.items():
        for asset, amount in (("SATS", 2_000_000), ("AZC", 10**9)):
            httpx.post(
                f"{stack.exchange.url}/api/owner/members/{member_id}/adjustments",
                headers=owner,
                json={"asset": asset, "amount": amount, "reason": f"bench {handle}",
                      "idempotency_key": secrets.token_hex(8)},
            ).raise_for_status()  # fmt: skip
    first = stack.member_ids[MEMBERS[0]]
    address = stack.chain.node.rpc("getnewaddress", wallet="outside")
    httpx.post(
        f"{stack.exchange.url}/v1/withdrawals",
        headers={"Authorization": f"Bearer {stack.member_token(MEMBERS[0])}"},
        json={"chain": "bitcoin", "address": address, "amount": APPROVAL_ABOVE + 1,
              "idempotency_key": secrets.token_hex(8)},
    ).raise_for_status()  # fmt: skip
    return first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="scnode-owner-bench-"))
    stack = Stack(root, owner="olivia")
    try:
        started = time.perf_counter()
        stack.start(MEMBERS)
        print(f"stack up in {time.perf_counter() - started:.1f} s")
        member_id = some_history(stack)
        browser = httpx.Client(follow_redirects=True, timeout=30)
        sign_in(stack, browser)
        pages = [
            "/owner/members", f"/owner/members/{member_id}", "/owner/funds",
            "/owner/components", "/owner/audit", f"/owner/audit?member={MEMBERS[0]}",
            "/owner/audit?source=dashboard",
        ]  # fmt: skip
        print(f"{'page':34} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for path in pages:
            times = []
            for _ in range(args.requests):
                begin = time.perf_counter()
                reply = browser.get(f"{stack.dashboard_url}{path}")
                times.append((time.perf_counter() - begin) * 1000)
                assert reply.status_code == 200, (path, reply.status_code)
            times.sort()
            p95 = times[int(len(times) * 0.95) - 1]
            print(f"{path:34} {len(times):4} {statistics.median(times):8.1f} {p95:8.1f} "
                  f"{times[-1]:8.1f}")  # fmt: skip
        browser.close()
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
