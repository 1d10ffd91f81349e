"""Fault injection (issue 13 item 4), bounded for CI: the exchange with its chain APIs and the
simnet chain stand-ins as real processes on loopback (tests/assurance/loadgen.py) under a small
mixed load of orders, cancels, deposits and withdrawals, while the test really SIGKILLs the
exchange, a chain API and a chain stand-in at random moments and starts them again as systemd
would (Restart=always). After each: requests succeed again, deposits paid while something was
down are credited exactly once, every withdrawal is paid at most once (exactly once when the
exchange says it was sent), the ledger audit is clean. A stalling chain stand-in (simnet's
``stall`` control) slows sends without a second payment."""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.assurance.loadgen import RPC_TIMEOUT, Fault, World

MEMBERS = 6
WORKERS = 3
# the processes start slowly on the shared 2-core machine (20-45 s per restart at load ~16)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="scnode-faults-"))
    w = World(root, MEMBERS)
    try:
        w.start()
        w.fund_everyone()
        yield w
    finally:
        w.stop()
        shutil.rmtree(root, ignore_errors=True)


def _assert_clean(world: World, settle: float = 60) -> None:
    world.wait_settled(timeout=settle)
    world.check_ledger()  # the ledger audit at the end (the load's auditor ran during it)
    audit = world.audit()
    print(audit)
    assert audit["deposits_checked"] >= 2 * MEMBERS
    assert {k: v for k, v in audit.items() if not k.endswith("_checked") and v} == {}, audit
    assert world.stats.audits > 0 and world.stats.audit_problems == []


def _answers_again(world: World) -> None:
    """Every member can read balances and place (and cancel) an order: the system is back."""
    for member in range(MEMBERS):
        with world.client(member) as client:
            assert client.get("/api/balances").status_code == 200
            body = {"market": "AZC/SATS", "side": "buy", "type": "limit", "price": 10,
                    "quantity": 1, "time_in_force": "gtc"}  # fmt: skip
            placed = client.post("/api/orders", json=body)
            assert placed.status_code == 201, placed.text
            gone = client.delete(f"/api/orders/{placed.json()['id']}")
            assert gone.status_code == 200, gone.text


def test_kill9_exchange_under_load(world: World) -> None:
    _kill9_under_load(world, ["exchange", "exchange"])


def _kill9_under_load(world: World, faults: list[str]) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")  # reproduce the moments with this seed
    rng = random.Random(seed)
    done: list[tuple[str, float]] = []

    def inject(stop: threading.Event) -> None:
        for fault in faults:
            if stop.wait(rng.uniform(2.0, 6.0)):
                return
            began = time.monotonic()
            if fault == "exchange":
                world.kill9("exchange")
            else:  # deposits and withdrawals pile up while the chain API is down
                world.kill9("api:bitcoin", pause=rng.uniform(0.5, 3.0))
            done.append((fault, time.monotonic() - began))
        stop.wait(5.0)  # load after the last fault
        stop.set()

    wall = world.run_load(240, WORKERS, audit_every=3.0, block_every=1.0, seed=seed, during=inject)
    print(f"faults {done} in {wall:.1f}s; {world.figures(wall)}")
    assert [f for f, _ in done] == faults
    assert world.exchange.proc is not None and world.exchange.proc.poll() is None
    # the kills did happen under load: requests went unanswered while the exchange was down
    assert sum(world.stats.unavailable.values()) > 0 or any(
        t > 1.0 for f, t in done if f == "exchange"
    )
    _answers_again(world)
    # after a chain API restart the deposit watcher reconnects with its backoff (up to 30 s)
    # and catches up from the journal or the wallet: minutes on a loaded machine, not seconds
    _assert_clean(world, settle=180)
    # withdrawals went through both before and after the faults (the worker resumed by itself)
    assert world.stats.statuses["withdraw"][201] > 0


def _withdraw_sats(world: World, *, address: int, amount: int, key: str) -> int:
    """Member 0 withdraws `amount` sats to the outside world's Bitcoin address number
    `address`; the withdrawal's id (accepted: 201)."""
    with world.client(0) as client:
        body = {"chain": "bitcoin", "address": world.outside["bitcoin"][address],
                "amount": amount, "idempotency_key": key}  # fmt: skip
        reply = client.post("/v1/withdrawals", json=body)
        assert reply.status_code == 201, reply.text
        wid: int = reply.json()["id"]
        return wid


def test_stalling_stand_in_pays_once(world: World) -> None:
    """The Bitcoin stand-in stalls ``sendtoaddress`` for three times the chain API's RPC
    timeout (then carries it out, as a busy bitcoind does): the withdrawal is accepted, and in
    the end it is paid exactly once, the audit clean."""
    btc = world.chains["bitcoin"]
    btc.node.stall(seconds=RPC_TIMEOUT * 3, method="sendtoaddress")
    wid = _withdraw_sats(world, address=0, amount=5_000, key="stall-0")
    time.sleep(RPC_TIMEOUT * 4)  # the stalled send has gone through by now
    world.wait_settled(timeout=60)
    with world.client(0) as client:
        assert client.get(f"/v1/withdrawals/{wid}").json()["state"] == "confirmed"
    _assert_clean(world)


def test_kill9_chain_api_under_load_deposits_still_credited(world: World) -> None:
    _kill9_under_load(world, ["chain_api"])


def test_kill9_bitcoin_stand_in_under_load_with_a_send_in_flight(world: World) -> None:
    """The Bitcoin stand-in daemon is SIGKILLed under load while a withdrawal's
    ``sendtoaddress`` runs in it (stalled there), and started again on its datadir, as systemd
    restarts a bitcoind: the chain and the wallets persist, the chain API and the exchange
    reconnect by themselves, a deposit paid after the restart is credited, the withdrawal in
    flight at the kill is paid exactly once (the send the kill cut off never happened, so it is
    sent again under the same key), and no deposit is lost or credited twice."""
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    btc = world.chains["bitcoin"]
    btc.node.stall(seconds=120, method="sendtoaddress")  # a kill ends the stall, not the time
    wid = _withdraw_sats(world, address=1, amount=7_000, key="stand-in-kill-0")
    deadline = time.monotonic() + 60
    while not any(
        c["method"] == "sendtoaddress" for c in btc.node.rpc("getrpcinfo")["active_commands"]
    ):
        assert time.monotonic() < deadline, "the withdrawal's send never reached the stand-in"
        time.sleep(0.2)
    faults: list[Fault] = []
    inject = world.fault_injector(rng, faults, (1.0, 3.0), plan=["node:bitcoin"])

    def during(stop: threading.Event) -> None:
        inject(stop)
        stop.wait(5.0)  # load after the recovery
        stop.set()

    sent_before = world.stats.statuses["withdraw"][201]
    wall = world.run_load(240, WORKERS, audit_every=3.0, seed=seed, during=during)
    print(f"faults {faults} in {wall:.1f}s; {world.figures(wall)}")
    assert [f.target for f in faults] == ["node:bitcoin"]
    assert btc.node.proc is not None and btc.node.proc.poll() is None
    # recovered by itself: a deposit paid after the restart was credited during the load
    assert faults[0].recovered_s is not None
    _assert_clean(world, settle=120)
    with world.client(0) as client:
        assert client.get(f"/v1/withdrawals/{wid}").json()["state"] == "confirmed"
    paid = [
        tx
        for tx in btc.node.rpc("listtransactions", "*", 100_000, wallet="wallet")
        if tx.get("category") == "send"
        and str(tx.get("comment", "")).startswith("scnode-send:")
        and tx["address"] == world.outside["bitcoin"][1]
        and tx["amount"] == Decimal("-0.00007000")
    ]
    assert len(paid) == 1, paid
    # withdrawals were still accepted under load around the kill
    assert world.stats.statuses["withdraw"][201] > sent_before
