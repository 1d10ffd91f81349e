"""The worker against a fake chain API with the real one's idempotency: each withdrawal is
paid once, refusals refund, an outage or a lost answer is retried with the same key."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.ledger import FEES, NODE_WALLET
from scnode_exchange.withdrawals.models import BROADCAST, CONFIRMED, FAILED, SENDING
from scnode_exchange.withdrawals.worker import WithdrawalWorker
from tests.unit.apps.exchange.withdrawals.helpers import (
    FEE,
    FakeChain,
    address,
    assert_audit_clean,
    balance,
    funded_member,
    make_service,
    system_balance,
)


@pytest.fixture
def exchange_db_url(sqlite_db_url: str) -> str:
    """SQLite only (see conftest.py): the service runs on both in test_withdrawal_service.py."""
    return sqlite_db_url


def test_ready_withdrawals_are_sent_once_and_followed_to_confirmation(
    sessions: sessionmaker[Session],
) -> None:
    member = funded_member(sessions, "alice", 1_000_000)
    service = make_service(sessions)
    chain = FakeChain()
    worker = WithdrawalWorker(service, {"bitcoin": chain}, follow_seconds=0)
    ids = [
        service.request_withdrawal(member, "bitcoin", address(i), 10_000 + i, f"k{i}").id
        for i in range(3)
    ]
    big = service.request_withdrawal(member, "bitcoin", address(9), 600_000, "big").id

    assert asyncio.run(worker.run_once()) == 3  # the big one waits for the owner
    assert sorted(chain.payments) == [f"wd-{i:06d}" for i in ids]
    for wid in ids:
        info = service.get(wid)
        assert info.state == BROADCAST
        assert info.txid == chain.payments[f"wd-{wid:06d}"][2]
    assert service.get(big).state == "awaiting_approval"

    asyncio.run(worker.run_once())  # nothing new to send; not yet confirmed
    assert len(chain.calls) == 3
    chain.mine(2)
    asyncio.run(worker.run_once())
    assert {service.get(w).state for w in ids} == {CONFIRMED}
    spent = sum(10_000 + i for i in range(3))
    assert balance(sessions, member) == (1_000_000 - spent - 3 * FEE, 600_000 + FEE)
    assert system_balance(sessions, FEES) == 3 * FEE - 3 * 150  # network fee 150 per tx
    assert system_balance(sessions, NODE_WALLET) == -1_000_000 + spent + 3 * 150

    service.approve(big, "owner:test")
    asyncio.run(worker.run_once())
    assert service.get(big).state == BROADCAST
    assert len(chain.payments) == 4
    assert_audit_clean(sessions)


def test_refused_send_fails_and_refunds(sessions: sessionmaker[Session]) -> None:
    member = funded_member(sessions, "bob", 100_000)
    service = make_service(sessions)
    chain = FakeChain()
    chain.refuse.add(address(7))
    worker = WithdrawalWorker(service, {"bitcoin": chain})
    wid = service.request_withdrawal(member, "bitcoin", address(7), 10_000, "k").id
    asyncio.run(worker.run_once())
    info = service.get(wid)
    assert info.state == FAILED
    assert info.failure_reason is not None and "invalid address" in info.failure_reason
    assert balance(sessions, member) == (100_000, 0)
    assert chain.payments == {}
    assert_audit_clean(sessions)


def test_outage_keeps_the_withdrawal_sending_and_retries_with_the_same_key(
    sessions: sessionmaker[Session],
) -> None:
    member = funded_member(sessions, "carol", 100_000)
    service = make_service(sessions)
    chain = FakeChain()
    chain.down = True
    worker = WithdrawalWorker(service, {"bitcoin": chain})
    wid = service.request_withdrawal(member, "bitcoin", address(), 10_000, "k").id
    asyncio.run(worker.run_once())
    asyncio.run(worker.run_once())
    assert service.get(wid).state == SENDING
    assert balance(sessions, member) == (100_000, 10_000 + FEE)  # still reserved, not refunded
    chain.down = False
    asyncio.run(worker.run_once())
    assert service.get(wid).state == BROADCAST
    assert chain.calls == [f"wd-{wid:06d}"] * 3  # never a new key
    assert len(chain.payments) == 1


def test_a_lost_answer_is_asked_again_and_paid_once(sessions: sessionmaker[Session]) -> None:
    """The wallet sent but the answer never arrived (the crash-after-send case in-process)."""
    member = funded_member(sessions, "dave", 100_000)
    service = make_service(sessions)
    chain = FakeChain()
    worker = WithdrawalWorker(service, {"bitcoin": chain})
    wid = service.request_withdrawal(member, "bitcoin", address(), 10_000, "k").id
    chain.lose_answer_once.add(f"wd-{wid:06d}")
    asyncio.run(worker.run_once())
    assert service.get(wid).state == SENDING
    asyncio.run(WithdrawalWorker(service, {"bitcoin": chain}).run_once())  # "restarted"
    info = service.get(wid)
    assert (info.state, info.txid) == (BROADCAST, chain.payments[f"wd-{wid:06d}"][2])
    assert len(chain.payments) == 1
    assert balance(sessions, member) == (100_000 - 10_000 - FEE, 0)
    assert_audit_clean(sessions)


def test_a_cancelled_withdrawal_is_never_sent(sessions: sessionmaker[Session]) -> None:
    member = funded_member(sessions, "erin", 100_000)
    service = make_service(sessions)
    chain = FakeChain()
    wid = service.request_withdrawal(member, "bitcoin", address(), 10_000, "k").id
    service.cancel(member, wid)
    asyncio.run(WithdrawalWorker(service, {"bitcoin": chain}).run_once())
    assert chain.calls == []


def test_run_stops_when_told_and_wakes_on_demand(sessions: sessionmaker[Session]) -> None:
    member = funded_member(sessions, "frank", 100_000)
    service = make_service(sessions)
    chain = FakeChain()
    worker = WithdrawalWorker(service, {"bitcoin": chain}, poll_seconds=30)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await asyncio.sleep(0.2)  # first (empty) pass done; now waiting 30 s
        wid = await asyncio.to_thread(
            service.request_withdrawal, member, "bitcoin", address(), 10_000, "k"
        )
        worker.wake()
        for _ in range(100):
            if chain.payments:
                break
            await asyncio.sleep(0.02)
        assert list(chain.payments) == [f"wd-{wid.id:06d}"]
        stop.set()
        await asyncio.wait_for(task, 2)

    asyncio.run(scenario())


def test_confirmations_are_looked_up_at_most_every_follow_seconds(
    sessions: sessionmaker[Session],
) -> None:
    member = funded_member(sessions, "gina", 100_000)
    service = make_service(sessions)
    chain = FakeChain()
    worker = WithdrawalWorker(service, {"bitcoin": chain}, follow_seconds=3600)
    wid = service.request_withdrawal(member, "bitcoin", address(), 10_000, "k").id
    asyncio.run(worker.run_once())  # sends, and follows (the first pass always does)
    chain.mine(5)
    for _ in range(3):
        asyncio.run(worker.run_once())
    assert chain.lookups == 1
    assert service.get(wid).state == BROADCAST
    worker.follow_seconds = 0
    worker._next_follow = 0.0
    asyncio.run(worker.run_once())
    assert (chain.lookups, service.get(wid).state) == (2, CONFIRMED)


def test_two_workers_at_once_still_pay_each_withdrawal_once(
    sessions: sessionmaker[Session],
) -> None:
    member = funded_member(sessions, "hugo", 1_000_000)
    service = make_service(sessions)
    chain = FakeChain()
    ids = [
        service.request_withdrawal(member, "bitcoin", address(i), 5_000 + i, f"k{i}").id
        for i in range(10)
    ]
    first = WithdrawalWorker(service, {"bitcoin": chain}, follow_seconds=0)
    second = WithdrawalWorker(service, {"bitcoin": chain}, follow_seconds=0)

    async def both() -> None:
        await asyncio.gather(first.run_once(), second.run_once())
        await asyncio.gather(first.run_once(), second.run_once())

    asyncio.run(both())
    assert sorted(chain.payments) == [f"wd-{i:06d}" for i in ids]
    assert {service.get(i).state for i in ids} == {BROADCAST}
    spent = sum(5_000 + i for i in range(10)) + 10 * FEE
    assert balance(sessions, member) == (1_000_000 - spent, 0)
    assert_audit_clean(sessions)
