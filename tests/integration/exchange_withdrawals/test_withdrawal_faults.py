"""The worker really killed (SIGKILL) at each step of a send, and at a random moment under
load, then restarted: every withdrawal is paid exactly once or refunded, never both, and the
ledger stays balanced. Real chain API process + simnet chain stand-in."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest
from sqlalchemy import select

from scnode_exchange.ledger import FEES, SATS, JournalEntry, Ledger
from tests.integration.exchange_withdrawals.harness import Exchange

FEE = 300
FUNDS = 200_000_000_000  # 2 000 BTC each: more than the node wallet's 500


@pytest.mark.parametrize(
    ("crash_at", "state_after_crash", "paid_before_restart"),
    [
        ("after_mark_sending", "sending", False),
        ("after_send", "sending", True),
        ("after_commit", "broadcast", True),
    ],
)
def test_killed_at_a_step_then_restarted_pays_exactly_once(
    exchange: Exchange, crash_at: str, state_after_crash: str, paid_before_restart: bool
) -> None:
    member = exchange.member("alice", 1_000_000)
    wid = exchange.service.request_withdrawal(
        member, "bitcoin", exchange.address(), 250_000, "w1"
    ).id
    key = f"{exchange.prefix}-{wid:06d}"

    proc = exchange.start_worker(crash_at=crash_at)
    assert proc.wait(30) == -9, exchange.worker_log()
    assert f"CRASH_AT={crash_at}" in exchange.worker_log()
    assert exchange.states()[wid] == state_after_crash
    assert (key in exchange.wallet_sends()) is paid_before_restart
    with exchange.sessions() as session:  # reserved until the txid is committed, never lost
        expected = (1_000_000, 250_000 + FEE) if state_after_crash == "sending" else (
            1_000_000 - 250_000 - FEE, 0)  # fmt: skip
        assert Ledger(session).balances(member)[SATS] == expected

    exchange.start_worker()
    exchange.wait_for("broadcast", lambda: exchange.states()[wid] == "broadcast")
    exchange.node.mine(1)
    exchange.wait_for("confirmed", lambda: exchange.states()[wid] == "confirmed")
    assert exchange.stop_worker() == 0

    assert len(exchange.wallet_sends()[key]) == 1
    exchange.assert_consistent()
    info = exchange.service.get(wid)
    wallet_fee = -exchange.node.rpc("gettransaction", info.txid, wallet="wallet")["fee"]
    assert info.network_fee is not None
    assert info.network_fee == round(wallet_fee * 100_000_000) > 0
    with exchange.sessions() as session:  # the fee account kept the member's fee minus the real one
        assert Ledger(session).system_account(FEES, SATS).balance == FEE - info.network_fee
    with exchange.sessions() as session:
        assert Ledger(session).balances(member)[SATS] == (1_000_000 - 250_000 - FEE, 0)
        refs = list(
            session.scalars(
                select(JournalEntry.reference).where(
                    JournalEntry.reference == f"withdrawal:{wid}:settle"
                )
            )
        )
        assert len(refs) == 1


def test_killed_at_random_moments_under_load(exchange: Exchange) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"seed {seed}")  # reproduce a failure with this seed
    members = [exchange.member(f"m{i}", FUNDS) for i in range(3)]
    ids = []
    for i in range(12):
        amount = rng.randrange(10_000, 2_000_000)
        ids.append(
            exchange.service.request_withdrawal(
                members[i % 3], "bitcoin", exchange.address(), amount, f"load-{i}"
            ).id
        )
    # more than the node wallet holds (10 mature coinbases): the chain API refuses it for
    # good -> failed, refunded
    too_big = exchange.service.request_withdrawal(
        members[0], "bitcoin", exchange.address(), 100_000_000_000, "too-big"
    ).id

    def done() -> int:
        return sum(s in ("broadcast", "failed") for s in exchange.states().values())

    def reached(target: int) -> Callable[[], bool]:
        return lambda: done() >= target

    total = len(ids) + 1
    for _round in range(2):
        exchange.start_worker()
        target = min(done() + rng.randrange(1, 8), total - 1)
        exchange.wait_for(f"{target} sent", reached(target))
        time.sleep(rng.uniform(0, 0.05))  # land anywhere in the next send
        exchange.kill9()
    exchange.start_worker()
    exchange.wait_for("all sent", lambda: done() == total, timeout=60)
    assert exchange.stop_worker() == 0

    states = exchange.states()
    assert states[too_big] == "failed"
    assert all(states[i] == "broadcast" for i in ids), states
    exchange.assert_consistent()
    with exchange.sessions() as session:
        balances = [Ledger(session).balances(m)[SATS] for m in members]
    assert all(reserved == 0 for _, reserved in balances)
    sent = sum(w.total for w in exchange.service.list_withdrawals(limit=100) if w.id in ids)
    assert sum(b for b, _ in balances) == 3 * FUNDS - sent


def test_chain_api_down_keeps_it_sending_with_its_key_then_pays_once(exchange: Exchange) -> None:
    member = exchange.member("bob", 1_000_000)
    wid = exchange.service.request_withdrawal(
        member, "bitcoin", exchange.address(), 100_000, "w1"
    ).id
    exchange.api.stop()
    try:
        exchange.start_worker()
        exchange.wait_for("sending", lambda: exchange.states()[wid] == "sending")
        time.sleep(0.5)  # several passes against the dead chain API
        assert exchange.states()[wid] == "sending"  # not failed, not refunded
        with exchange.sessions() as session:
            assert Ledger(session).balances(member)[SATS] == (1_000_000, 100_000 + FEE)
        assert "chain API unavailable" in exchange.worker_log()
    finally:
        exchange.api.start()
    exchange.wait_for("broadcast", lambda: exchange.states()[wid] == "broadcast")
    assert exchange.stop_worker() == 0
    assert exchange.wallet_sends() == {
        f"{exchange.prefix}-{wid:06d}": {exchange.service.get(wid).txid}
    }
    exchange.assert_consistent()
