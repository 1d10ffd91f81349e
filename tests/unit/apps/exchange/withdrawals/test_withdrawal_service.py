"""Withdrawal requests on the ledger: limits, atomic reservation, idempotency, the state
machine and refunds (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.ledger import FEES, NODE_WALLET, Hold, JournalEntry, Ledger
from scnode_exchange.withdrawals.models import (
    APPROVED,
    AWAITING_APPROVAL,
    BROADCAST,
    CANCELLED,
    CONFIRMED,
    FAILED,
    READY_TO_SEND,
    REJECTED,
    REQUESTED,
    RESERVED,
    SENDING,
    WithdrawalEvent,
)
from scnode_exchange.withdrawals.service import (
    IdempotencyKeyReusedError,
    InvalidTransitionError,
    WithdrawalNotFoundError,
    WithdrawalRefusedError,
)
from tests.unit.apps.exchange.withdrawals.helpers import (
    FEE,
    Clock,
    address,
    assert_audit_clean,
    balance,
    counts,
    funded_member,
    make_service,
    system_balance,
)


def test_request_reserves_amount_plus_fee_in_the_same_transaction(
    sessions: sessionmaker[Session],
) -> None:
    member = funded_member(sessions, "alice", 100_000)
    service = make_service(sessions)
    info = service.request_withdrawal(member, "bitcoin", address(), 40_000, "k1")
    assert info.state == RESERVED
    assert (info.amount, info.fee, info.total) == (40_000, FEE, 40_000 + FEE)
    assert balance(sessions, member) == (100_000, 40_000 + FEE)
    with sessions() as session:
        hold = session.scalar(select(Hold).where(Hold.reference == f"withdrawal:{info.id}:hold"))
        assert hold is not None and hold.remaining == 40_000 + FEE
    assert [(e.from_state, e.to_state) for e in service.events(info.id)] == [
        (None, REQUESTED),
        (REQUESTED, RESERVED),
    ]
    assert_audit_clean(sessions)


REFUSALS = [
    ("bitcoin", address(hrp="bc"), 10_000, "invalid_address"),  # mainnet address on regtest
    ("bitcoin", address()[:-1] + ("q" if address()[-1] != "q" else "p"), 10_000, "invalid_address"),
    ("bitcoin", "not an address", 10_000, "invalid_address"),
    ("bitcoin", address(), 999, "below_minimum"),
    ("bitcoin", address(), 1_000_001, "above_maximum"),
    ("bitcoin", address(), 99_800, "insufficient_funds"),  # 99_800 + fee > 100_000
    ("litecoin", address(), 10_000, "unknown_chain"),
]


def test_refusals_write_nothing(sessions: sessionmaker[Session]) -> None:
    member = funded_member(sessions, "bob", 100_000)
    service = make_service(sessions)
    before = counts(sessions)
    for chain, to, amount, code in REFUSALS:
        with pytest.raises(WithdrawalRefusedError) as refused:
            service.request_withdrawal(member, chain, to, amount, "k1")
        assert refused.value.code == code, (chain, to, amount)
        assert counts(sessions) == before
        assert balance(sessions, member) == (100_000, 0)
    # the key is still free: a corrected request with it goes through
    ok = service.request_withdrawal(member, "bitcoin", address(), 10_000, "k1")
    assert ok.state == RESERVED


def test_exactly_the_whole_balance_can_be_withdrawn(sessions: sessionmaker[Session]) -> None:
    member = funded_member(sessions, "carol", 50_000 + FEE)
    service = make_service(sessions)
    service.request_withdrawal(member, "bitcoin", address(), 50_000, "all")
    assert balance(sessions, member) == (50_000 + FEE, 50_000 + FEE)
    with pytest.raises(WithdrawalRefusedError, match="insufficient"):
        service.request_withdrawal(member, "bitcoin", address(), 1_000, "more")


def test_frozen_member_is_refused_with_nothing_written(sessions: sessionmaker[Session]) -> None:
    member = funded_member(sessions, "dave", 100_000)
    with sessions.begin() as session:
        Ledger(session).freeze(member, "reorg")
    service = make_service(sessions)
    before = counts(sessions)
    with pytest.raises(WithdrawalRefusedError) as refused:
        service.request_withdrawal(member, "bitcoin", address(), 10_000, "k")
    assert refused.value.code == "member_frozen"
    assert counts(sessions) == before


def test_daily_limit_counts_the_last_24_hours_without_refunded_ones(
    sessions: sessionmaker[Session],
) -> None:
    member = funded_member(sessions, "erin", 5_000_000)
    clock = Clock()
    service = make_service(sessions, clock, approval_threshold=None)
    service.request_withdrawal(member, "bitcoin", address(), 1_000_000, "a")
    second = service.request_withdrawal(member, "bitcoin", address(), 500_000, "b")
    with pytest.raises(WithdrawalRefusedError) as refused:
        service.request_withdrawal(member, "bitcoin", address(), 1_000, "c")
    assert refused.value.code == "daily_limit"
    service.cancel(member, second.id)  # a refunded withdrawal does not use the limit
    service.request_withdrawal(member, "bitcoin", address(), 400_000, "d")
    with pytest.raises(WithdrawalRefusedError):
        service.request_withdrawal(member, "bitcoin", address(), 200_000, "e")
    clock.advance(hours=24, seconds=1)
    service.request_withdrawal(member, "bitcoin", address(), 200_000, "e")


def test_same_idempotency_key_returns_the_first_withdrawal(
    sessions: sessionmaker[Session],
) -> None:
    member = funded_member(sessions, "frank", 100_000)
    other = funded_member(sessions, "grace", 100_000)
    service = make_service(sessions)
    first = service.request_withdrawal(member, "bitcoin", address(), 10_000, "same")
    again = service.request_withdrawal(member, "bitcoin", address(), 10_000, "same")
    assert (again.id, again.replayed, first.replayed) == (first.id, True, False)
    assert balance(sessions, member) == (100_000, 10_000 + FEE)  # reserved once
    with pytest.raises(IdempotencyKeyReusedError):
        service.request_withdrawal(member, "bitcoin", address(), 10_001, "same")
    with pytest.raises(IdempotencyKeyReusedError):
        service.request_withdrawal(member, "bitcoin", address(2), 10_000, "same")
    # keys are per member
    theirs = service.request_withdrawal(other, "bitcoin", address(), 10_000, "same")
    assert theirs.id != first.id


def test_above_the_threshold_waits_for_approval(sessions: sessionmaker[Session]) -> None:
    member = funded_member(sessions, "heidi", 2_000_000)
    service = make_service(sessions)
    small = service.request_withdrawal(member, "bitcoin", address(), 500_000, "small")
    big = service.request_withdrawal(member, "bitcoin", address(), 500_001, "big")
    assert (small.state, big.state) == (RESERVED, AWAITING_APPROVAL)
    assert balance(sessions, member)[1] == 1_000_001 + 2 * FEE  # both reserved at once
    assert service.ids_in(READY_TO_SEND) == [small.id]
    assert service.claim_for_sending(big.id) is None
    approved = service.approve(big.id, "owner:key1")
    assert approved.state == APPROVED
    assert service.ids_in(READY_TO_SEND) == [small.id, big.id]
    with pytest.raises(InvalidTransitionError):
        service.approve(big.id, "owner:key1")
    events = service.events(big.id)
    assert (events[-1].to_state, events[-1].actor) == (APPROVED, "owner:key1")


def test_reject_releases_the_hold_and_records_who_and_why(
    sessions: sessionmaker[Session],
) -> None:
    member = funded_member(sessions, "ivan", 2_000_000)
    service = make_service(sessions)
    big = service.request_withdrawal(member, "bitcoin", address(), 800_000, "big")
    with pytest.raises(WithdrawalRefusedError):
        service.reject(big.id, "owner:key1", "  ")
    rejected = service.reject(big.id, "owner:key1", "address on a sanctions list")
    assert (rejected.state, rejected.failure_reason) == (REJECTED, "address on a sanctions list")
    assert balance(sessions, member) == (2_000_000, 0)
    last = service.events(big.id)[-1]
    assert (last.to_state, last.actor, last.detail) == (
        REJECTED,
        "owner:key1",
        "address on a sanctions list",
    )
    with pytest.raises(InvalidTransitionError):
        service.cancel(member, big.id)
    assert_audit_clean(sessions)


def test_cancel_only_own_and_only_before_sending(sessions: sessionmaker[Session]) -> None:
    member = funded_member(sessions, "judy", 100_000)
    stranger = funded_member(sessions, "mallory", 100_000)
    service = make_service(sessions)
    first = service.request_withdrawal(member, "bitcoin", address(), 10_000, "one")
    with pytest.raises(WithdrawalNotFoundError):
        service.cancel(stranger, first.id)
    with pytest.raises(WithdrawalNotFoundError):
        service.get(first.id, member_id=stranger)
    assert service.cancel(member, first.id).state == CANCELLED
    assert balance(sessions, member) == (100_000, 0)
    second = service.request_withdrawal(member, "bitcoin", address(), 10_000, "two")
    assert service.claim_for_sending(second.id) is not None
    with pytest.raises(InvalidTransitionError):
        service.cancel(member, second.id)
    assert balance(sessions, member) == (100_000, 10_000 + FEE)


def test_send_path_settles_the_hold_once_and_books_the_network_fee(
    sessions: sessionmaker[Session],
) -> None:
    member = funded_member(sessions, "ken", 100_000)
    service = make_service(sessions)
    info = service.request_withdrawal(member, "bitcoin", address(), 30_000, "k")
    claimed = service.claim_for_sending(info.id)
    assert claimed is not None
    assert (claimed.state, claimed.send_key) == (SENDING, f"wd-{info.id:06d}")
    assert service.claim_for_sending(info.id) is None  # already claimed
    wallet_before = system_balance(sessions, NODE_WALLET)
    txid = "ab" * 32
    sent = service.record_broadcast(info.id, txid)
    assert (sent.state, sent.txid) == (BROADCAST, txid)
    assert balance(sessions, member) == (100_000 - 30_000 - FEE, 0)
    assert system_balance(sessions, NODE_WALLET) == wallet_before + 30_000
    assert system_balance(sessions, FEES) == FEE
    assert service.record_broadcast(info.id, txid).state == BROADCAST  # idempotent
    assert balance(sessions, member) == (100_000 - 30_000 - FEE, 0)
    with pytest.raises(InvalidTransitionError):
        service.record_broadcast(info.id, "cd" * 32)
    assert service.record_confirmations(info.id, 1, 141).state == BROADCAST
    done = service.record_confirmations(info.id, 2, 141)
    assert (done.state, done.network_fee, done.confirmations) == (CONFIRMED, 141, 2)
    assert system_balance(sessions, FEES) == FEE - 141
    assert system_balance(sessions, NODE_WALLET) == wallet_before + 30_000 + 141
    with sessions() as session:
        refs = set(session.scalars(select(JournalEntry.reference)))
    assert {f"withdrawal:{info.id}:settle", f"withdrawal:{info.id}:network_fee"} <= refs
    assert [e.to_state for e in service.events(info.id)] == [
        REQUESTED,
        RESERVED,
        SENDING,
        BROADCAST,
        CONFIRMED,
    ]
    assert_audit_clean(sessions)


def test_definitive_refusal_fails_and_refunds(sessions: sessionmaker[Session]) -> None:
    member = funded_member(sessions, "leo", 100_000)
    service = make_service(sessions)
    info = service.request_withdrawal(member, "bitcoin", address(), 30_000, "k")
    with pytest.raises(InvalidTransitionError):
        service.record_failure(info.id, "too early")  # only a sending one can fail
    service.claim_for_sending(info.id)
    failed = service.record_failure(info.id, "insufficient funds in the node wallet")
    assert (failed.state, failed.failure_reason) == (
        FAILED,
        "insufficient funds in the node wallet",
    )
    assert failed.to_json()["refunded"] is True
    assert balance(sessions, member) == (100_000, 0)
    with pytest.raises(InvalidTransitionError):
        service.record_broadcast(info.id, "ab" * 32)  # never both refunded and settled
    assert balance(sessions, member) == (100_000, 0)
    assert_audit_clean(sessions)


def test_a_freeze_holds_back_withdrawals_not_yet_sending(sessions: sessionmaker[Session]) -> None:
    member = funded_member(sessions, "mia", 100_000)
    service = make_service(sessions)
    info = service.request_withdrawal(member, "bitcoin", address(), 10_000, "k")
    with sessions.begin() as session:
        Ledger(session).freeze(member, "deposit reorged")
    assert service.ids_in(READY_TO_SEND) == []
    assert service.claim_for_sending(info.id) is None
    with sessions.begin() as session:
        Ledger(session).unfreeze(member)
    assert service.ids_in(READY_TO_SEND) == [info.id]


def test_paging_is_newest_first_and_scoped(sessions: sessionmaker[Session]) -> None:
    member = funded_member(sessions, "nina", 1_000_000)
    other = funded_member(sessions, "oscar", 1_000_000)
    service = make_service(sessions)
    ids = [
        service.request_withdrawal(member, "bitcoin", address(i), 1_000, f"k{i}").id
        for i in range(5)
    ]
    service.request_withdrawal(other, "bitcoin", address(), 1_000, "x")
    page1 = service.list_withdrawals(member_id=member, limit=2)
    page2 = service.list_withdrawals(member_id=member, limit=2, before_id=page1[-1].id)
    page3 = service.list_withdrawals(member_id=member, limit=2, before_id=page2[-1].id)
    assert [w.id for w in page1 + page2 + page3] == ids[::-1]


def test_events_are_append_only(sessions: sessionmaker[Session]) -> None:
    member = funded_member(sessions, "pat", 100_000)
    service = make_service(sessions)
    info = service.request_withdrawal(member, "bitcoin", address(), 10_000, "k")
    with sessions() as session:
        event = session.scalars(
            select(WithdrawalEvent).where(WithdrawalEvent.withdrawal_id == info.id)
        ).first()
        assert event is not None
        event.actor = "someone else"
        with pytest.raises(RuntimeError, match="immutable"):
            session.flush()
        session.rollback()
        session.delete(session.get(WithdrawalEvent, event.id))
        with pytest.raises(RuntimeError, match="immutable"):
            session.flush()


def test_racing_requests_never_reserve_more_than_the_balance(
    sessions: sessionmaker[Session],
) -> None:
    member = funded_member(sessions, "quinn", 100_000)
    service = make_service(sessions)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        try:
            service.request_withdrawal(member, "bitcoin", address(i), 40_000, f"race-{i}")
            result = "ok"
        except WithdrawalRefusedError as exc:
            result = exc.code
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["insufficient_funds"] * 6 + ["ok", "ok"]
    assert balance(sessions, member) == (100_000, 2 * (40_000 + FEE))
    assert_audit_clean(sessions)


def test_racing_duplicate_requests_reserve_once(sessions: sessionmaker[Session]) -> None:
    member = funded_member(sessions, "ruth", 100_000)
    service = make_service(sessions)
    ids: list[int] = []

    def attempt() -> None:
        info = service.request_withdrawal(member, "bitcoin", address(), 10_000, "double-click")
        ids.append(info.id)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 6 and len(set(ids)) == 1
    assert balance(sessions, member) == (100_000, 10_000 + FEE)
