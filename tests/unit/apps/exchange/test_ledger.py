"""Rules of the double-entry ledger, one test per rule, on SQLite (and PostgreSQL when given)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.ledger import (
    AZC,
    FEES,
    NODE_WALLET,
    OWNER_EQUITY,
    SATS,
    SYSTEM_ACCOUNTS,
    Account,
    HoldClosedError,
    IdempotencyConflictError,
    InsufficientFundsError,
    InvalidAmountError,
    JournalEntry,
    Ledger,
    Leg,
    MemberFrozenError,
    UnbalancedEntryError,
    verify,
)

Sessions = sessionmaker[Session]


def _member_with(sessions: Sessions, handle: str, sats: int = 0, azc: int = 0) -> int:
    with sessions.begin() as s:
        ledger = Ledger(s)
        member = ledger.create_member(handle)
        for asset, amount in ((SATS, sats), (AZC, azc)):
            if amount:
                ledger.transfer(
                    "deposit",
                    "test deposit",
                    ledger.system_account(NODE_WALLET, asset),
                    ledger.member_account(member.id, asset),
                    amount,
                )
        return member.id


def _balances(sessions: Sessions, member_id: int) -> dict[str, tuple[int, int]]:
    with sessions.begin() as s:
        return dict(Ledger(s).balances(member_id))


def _assert_audit_clean(sessions: Sessions) -> None:
    with sessions.begin() as s:
        report = verify(s)
    assert report.problems == []


def test_assets_and_system_accounts_exist(sessions: Sessions) -> None:
    with sessions.begin() as s:
        ledger = Ledger(s)
        for asset in (SATS, AZC, "MICRO"):
            for name in SYSTEM_ACCOUNTS:
                assert ledger.system_account(name, asset).balance == 0
        ledger.ensure_assets()  # a second call creates nothing new
        assert s.query(Account).filter(Account.system_name.is_not(None)).count() == 3 * len(
            SYSTEM_ACCOUNTS
        )


def test_new_member_has_a_zero_account_per_asset(sessions: Sessions) -> None:
    alice = _member_with(sessions, "alice")
    assert _balances(sessions, alice) == {SATS: (0, 0), AZC: (0, 0), "MICRO": (0, 0)}


def test_deposit_credits_member_and_balances_to_zero(sessions: Sessions) -> None:
    alice = _member_with(sessions, "alice", sats=50_000)
    assert _balances(sessions, alice)[SATS] == (50_000, 0)
    with sessions.begin() as s:
        assert Ledger(s).system_account(NODE_WALLET, SATS).balance == -50_000
        report = verify(s)
    assert report.ok and report.per_asset_sum[SATS] == 0


def test_transfer_between_members(sessions: Sessions) -> None:
    alice = _member_with(sessions, "alice", sats=1000)
    bob = _member_with(sessions, "bob")
    with sessions.begin() as s:
        ledger = Ledger(s)
        ledger.transfer(
            "transfer", "pay bob", ledger.member_account(alice, SATS),
            ledger.member_account(bob, SATS), 400, actor="member:alice",
        )  # fmt: skip
    assert _balances(sessions, alice)[SATS] == (600, 0)
    assert _balances(sessions, bob)[SATS] == (400, 0)
    _assert_audit_clean(sessions)


def test_overdraft_is_refused_and_nothing_is_written(sessions: Sessions) -> None:
    alice = _member_with(sessions, "alice", sats=100)
    with pytest.raises(InsufficientFundsError), sessions.begin() as s:
        ledger = Ledger(s)
        ledger.transfer(
            "withdrawal", "too much", ledger.member_account(alice, SATS),
            ledger.system_account(NODE_WALLET, SATS), 101,
        )  # fmt: skip
    assert _balances(sessions, alice)[SATS] == (100, 0)
    with sessions.begin() as s:
        assert s.query(JournalEntry).filter_by(kind="withdrawal").count() == 0


def test_unbalanced_zero_float_and_cross_asset_entries_are_refused(sessions: Sessions) -> None:
    alice = _member_with(sessions, "alice", sats=100, azc=100)
    with sessions.begin() as s:
        ledger = Ledger(s)
        wallet = ledger.system_account(NODE_WALLET, SATS).id
        sats = ledger.member_account(alice, SATS).id
        azc = ledger.member_account(alice, AZC).id
        with pytest.raises(UnbalancedEntryError):
            ledger.post("x", "unbalanced", [Leg(wallet, -10), Leg(sats, 9)])
        with pytest.raises(UnbalancedEntryError):
            ledger.post("x", "one leg", [Leg(sats, 10)])
        with pytest.raises(UnbalancedEntryError):  # 10 SATS for 10 AZC is two unbalanced assets
            ledger.post("x", "cross asset", [Leg(sats, -10), Leg(azc, 10)])
        with pytest.raises(InvalidAmountError):
            ledger.post("x", "zero", [Leg(wallet, 0), Leg(sats, 0)])
        with pytest.raises(InvalidAmountError):
            ledger.post("x", "float", [Leg(wallet, -1.5), Leg(sats, 1.5)])  # type: ignore[arg-type]
        with pytest.raises(InvalidAmountError):
            ledger.transfer("x", "negative", wallet, sats, -5)
    _assert_audit_clean(sessions)


def test_system_accounts_may_go_negative_members_may_not(sessions: Sessions) -> None:
    alice = _member_with(sessions, "alice")
    with sessions.begin() as s:
        ledger = Ledger(s)
        ledger.transfer(
            "owner_adjustment", "goodwill credit", ledger.system_account(OWNER_EQUITY, SATS),
            ledger.member_account(alice, SATS), 25, actor="owner",
        )  # fmt: skip
        assert ledger.system_account(OWNER_EQUITY, SATS).balance == -25
    assert _balances(sessions, alice)[SATS] == (25, 0)


def test_database_check_constraint_backs_the_rule(sessions: Sessions) -> None:
    alice = _member_with(sessions, "alice", sats=10)
    with pytest.raises(IntegrityError), sessions.begin() as s:
        s.execute(update(Account).where(Account.member_id == alice).values(balance=-1))


def test_idempotent_reference(sessions: Sessions) -> None:
    alice = _member_with(sessions, "alice")
    for _ in range(2):
        with sessions.begin() as s:
            ledger = Ledger(s)
            ledger.transfer(
                "deposit", "txid:0", ledger.system_account(NODE_WALLET, SATS),
                ledger.member_account(alice, SATS), 700, reference="deposit:SATS:aa:0",
            )  # fmt: skip
    assert _balances(sessions, alice)[SATS] == (700, 0)
    with pytest.raises(IdempotencyConflictError), sessions.begin() as s:
        ledger = Ledger(s)
        ledger.transfer(
            "deposit", "txid:0", ledger.system_account(NODE_WALLET, SATS),
            ledger.member_account(alice, SATS), 701, reference="deposit:SATS:aa:0",
        )  # fmt: skip
    assert _balances(sessions, alice)[SATS] == (700, 0)


def test_hold_reserve_release_settle(sessions: Sessions) -> None:
    alice = _member_with(sessions, "alice", sats=1000)
    bob = _member_with(sessions, "bob")
    with sessions.begin() as s:
        ledger = Ledger(s)
        hold = ledger.reserve(ledger.member_account(alice, SATS), 600, "order 1")
        hold_id = hold.id
    assert _balances(sessions, alice)[SATS] == (1000, 600)
    with sessions.begin() as s:
        ledger = Ledger(s)
        # the held part is not available for anything else
        with pytest.raises(InsufficientFundsError):
            ledger.reserve(ledger.member_account(alice, SATS), 401, "order 2")
        with pytest.raises(InsufficientFundsError):
            ledger.transfer(
                "withdrawal", "w", ledger.member_account(alice, SATS),
                ledger.system_account(NODE_WALLET, SATS), 401,
            )  # fmt: skip
    with sessions.begin() as s:
        ledger = Ledger(s)
        ledger.settle(hold_id, ledger.member_account(bob, SATS), 250, "trade", "fill")
    assert _balances(sessions, alice)[SATS] == (750, 350)
    assert _balances(sessions, bob)[SATS] == (250, 0)
    with sessions.begin() as s:
        ledger = Ledger(s)
        with pytest.raises(HoldClosedError):  # more than remains
            ledger.settle(hold_id, ledger.member_account(bob, SATS), 351, "trade", "fill")
        ledger.release(hold_id, 50)
    assert _balances(sessions, alice)[SATS] == (750, 300)
    with sessions.begin() as s:
        closed = Ledger(s).release(hold_id)
        assert not closed.is_open and closed.remaining == 0
    assert _balances(sessions, alice)[SATS] == (750, 0)
    with pytest.raises(HoldClosedError), sessions.begin() as s:
        Ledger(s).release(hold_id, 1)
    _assert_audit_clean(sessions)


def test_hold_reference_is_idempotent(sessions: Sessions) -> None:
    alice = _member_with(sessions, "alice", sats=1000)
    for _ in range(2):
        with sessions.begin() as s:
            ledger = Ledger(s)
            ledger.reserve(ledger.member_account(alice, SATS), 300, "withdrawal", reference="w-1")
    assert _balances(sessions, alice)[SATS] == (1000, 300)


def test_frozen_member_cannot_pay_out_or_reserve_but_receives(sessions: Sessions) -> None:
    alice = _member_with(sessions, "alice", sats=1000)
    with sessions.begin() as s:
        ledger = Ledger(s)
        hold_id = ledger.reserve(ledger.member_account(alice, SATS), 100, "order").id
        ledger.freeze(alice, "reorg after credit")
    with sessions.begin() as s:
        ledger = Ledger(s)
        wallet = ledger.system_account(NODE_WALLET, SATS)
        account = ledger.member_account(alice, SATS)
        with pytest.raises(MemberFrozenError):
            ledger.transfer("withdrawal", "w", account, wallet, 10)
        with pytest.raises(MemberFrozenError):
            ledger.reserve(account, 10, "order")
        ledger.transfer("deposit", "d", wallet, account, 5)
        ledger.release(hold_id)  # giving back a hold moves nothing out
        # the owner may still act, with a reason, on a frozen member
        ledger.transfer(
            "owner_adjustment", "reverse reorged deposit", account,
            ledger.system_account(OWNER_EQUITY, SATS), 5, actor="owner", allow_frozen=True,
        )  # fmt: skip
        ledger.unfreeze(alice)
        ledger.transfer("withdrawal", "w", account, wallet, 10)
    assert _balances(sessions, alice)[SATS] == (990, 0)
    _assert_audit_clean(sessions)


def test_fee_split_entry_balances(sessions: Sessions) -> None:
    alice = _member_with(sessions, "alice", sats=1000)
    bob = _member_with(sessions, "bob")
    with sessions.begin() as s:
        ledger = Ledger(s)
        a = ledger.member_account(alice, SATS).id
        b = ledger.member_account(bob, SATS).id
        fees = ledger.system_account(FEES, SATS).id
        ledger.post("trade", "fill with fee", [Leg(a, -100), Leg(b, 99), Leg(fees, 1)])
        assert ledger.system_account(FEES, SATS).balance == 1
    _assert_audit_clean(sessions)


def test_journal_entries_are_immutable(sessions: Sessions) -> None:
    _member_with(sessions, "alice", sats=10)
    with pytest.raises(RuntimeError, match="immutable"), sessions.begin() as s:
        entry = s.query(JournalEntry).first()
        assert entry is not None
        entry.reason = "rewritten"
        s.flush()


def test_verify_reports_a_tampered_running_total(sessions: Sessions) -> None:
    alice = _member_with(sessions, "alice", sats=10)
    with sessions.begin() as s:
        s.execute(update(Account).where(Account.member_id == alice).values(balance=11))
    with sessions.begin() as s:
        report = verify(s)
    assert not report.ok
    assert any("running balance 11 != postings 10" in p for p in report.problems)


def test_concurrent_debits_never_overdraw(sessions: Sessions) -> None:
    """Eight threads race to withdraw 300 from 1000: exactly three succeed."""
    alice = _member_with(sessions, "alice", sats=1000)
    outcomes: list[str] = []
    lock = threading.Lock()

    def withdraw() -> None:
        try:
            with sessions.begin() as s:
                ledger = Ledger(s)
                ledger.transfer(
                    "withdrawal", "race", ledger.member_account(alice, SATS),
                    ledger.system_account(NODE_WALLET, SATS), 300,
                )  # fmt: skip
            result = "ok"
        except InsufficientFundsError:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=withdraw) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] * 3 + ["refused"] * 5
    assert _balances(sessions, alice)[SATS] == (100, 0)
    _assert_audit_clean(sessions)
