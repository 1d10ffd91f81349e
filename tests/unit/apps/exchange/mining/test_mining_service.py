"""Worker registry and payout split against the database (SQLite, and PostgreSQL when
configured): one balanced entry per payout, idempotent, only mature payouts, unknown work to
suspense, registry changes audited, members see their own detail only."""

from __future__ import annotations

import itertools
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.ledger import (
    AZC,
    FEES,
    MINING_POOL,
    NODE_WALLET,
    SATS,
    SUSPENSE,
    JournalEntry,
    Ledger,
    verify,
)
from scnode_exchange.mining import (
    ImmaturePayoutError,
    MiningError,
    MiningService,
    PayoutConflictError,
    PoolPayout,
    UnknownWorkerError,
    WindowOverlapError,
    WorkerTakenError,
)
from scnode_exchange.owner.models import OwnerAuditEntry

Members = tuple[int, int, int]


def payout(
    payout_id: str = "aa" * 32 + ":0",
    amount: int = 1_000_000,
    *,
    pool: str = "btc",
    confirmations: int = 100,
    coinbase: bool = True,
) -> PoolPayout:
    # each payout id its own 10-minute window (windows of one pool must not overlap)
    start = _windows.setdefault(payout_id, 1_000 + 600 * len(_windows))
    return PoolPayout(pool, payout_id, amount, confirmations, coinbase, start, start + 600)


_windows: dict[str, int] = {}


def balance(
    sessions: sessionmaker[Session], asset: str, *, member: int = 0, system: str = ""
) -> int:
    with sessions() as session:
        ledger = Ledger(session)
        account = (
            ledger.member_account(member, asset) if member else ledger.system_account(system, asset)
        )
        return account.balance


def audit_rows(
    sessions: sessionmaker[Session],
) -> list[tuple[str, str, int | None, dict[str, object]]]:
    with sessions() as session:
        rows = session.scalars(select(OwnerAuditEntry).order_by(OwnerAuditEntry.id))
        return [(r.actor, r.action, r.member_id, json.loads(r.details)) for r in rows]


# --- registry -------------------------------------------------------------------------------


def test_a_worker_name_is_unique_per_pool(mining: MiningService, members: Members) -> None:
    alice, bob, _ = members
    assert mining.register(alice, "btc", "alice.rig1")[1] is True
    assert mining.register(alice, "btc", "alice.rig1")[1] is False  # own name again: no-op
    with pytest.raises(WorkerTakenError):
        mining.register(bob, "btc", "alice.rig1")
    mining.register(bob, "azc", "alice.rig1")  # other pool: free
    assert [(w.pool, w.name) for w in mining.workers(member_id=alice)] == [("btc", "alice.rig1")]
    assert [(w.pool, w.name) for w in mining.workers(member_id=bob)] == [("azc", "alice.rig1")]
    assert len(mining.workers(pool="btc")) == 1


def test_bad_pool_or_name_is_refused(mining: MiningService, members: Members) -> None:
    for pool, name in [("ltc", "rig"), ("btc", ""), ("btc", "a b"), ("btc", "x" * 129)]:
        with pytest.raises(MiningError):
            mining.register(members[0], pool, name)
    assert mining.workers() == []


def test_registry_changes_are_audited(
    mining: MiningService, members: Members, sessions: sessionmaker[Session]
) -> None:
    alice, bob, _ = members
    mining.register(alice, "btc", "rig1")
    mining.assign("owner:ops", "btc", "rig1", bob, "sold the rig")
    mining.assign("owner:ops", "azc", "new", alice, "set up for her")
    mining.remove("owner:ops", "azc", "new", "retired")
    assert audit_rows(sessions) == [
        ("member:1", "mining_worker_register", alice, {"pool": "btc", "worker": "rig1"}),
        (
            "owner:ops",
            "mining_worker_assign",
            bob,
            {"pool": "btc", "worker": "rig1", "previous_member": alice},
        ),
        (
            "owner:ops",
            "mining_worker_assign",
            alice,
            {"pool": "azc", "worker": "new", "previous_member": None},
        ),
        ("owner:ops", "mining_worker_remove", alice, {"pool": "azc", "worker": "new"}),
    ]
    assert [(w.name, w.member_id) for w in mining.workers()] == [("rig1", bob)]


def test_a_member_removes_only_its_own_workers(mining: MiningService, members: Members) -> None:
    alice, bob, _ = members
    mining.register(alice, "btc", "rig1")
    with pytest.raises(UnknownWorkerError):
        mining.remove(f"member:{bob}", "btc", "rig1", "mine now", member_id=bob)
    mining.remove(f"member:{alice}", "btc", "rig1", "gone", member_id=alice)
    assert mining.workers() == []
    with pytest.raises(UnknownWorkerError):
        mining.remove("owner", "btc", "rig1", "again")


# --- split ----------------------------------------------------------------------------------


def test_split_credits_members_by_work_in_one_balanced_entry(
    mining: MiningService, members: Members, sessions: sessionmaker[Session]
) -> None:
    alice, bob, carol = members
    mining.register(alice, "btc", "alice.a")
    mining.register(alice, "btc", "alice.b")
    mining.register(bob, "btc", "bob.1")
    mining.register(carol, "btc", "carol.idle")
    work = {"alice.a": 2048.0, "alice.b": 1024.0, "bob.1": 1024.0, "carol.idle": 0.0}
    view, created = mining.split(payout(amount=1_000_000), work, actor="owner:ops")
    assert created
    # fee 1 % = 10,000; 990,000 split 3:1 (carol 0)
    assert balance(sessions, SATS, member=alice) == 742_500
    assert balance(sessions, SATS, member=bob) == 247_500
    assert balance(sessions, SATS, member=carol) == 0
    assert balance(sessions, SATS, system=FEES) == 10_000
    assert balance(sessions, SATS, system=NODE_WALLET) == -1_000_000
    assert [(p.member_id, p.work, p.amount, p.share) for p in view.parts] == [
        (alice, 3072.0, 742_500, 0.75),
        (bob, 1024.0, 247_500, 0.25),
        (carol, 0.0, 0, 0.0),
    ]
    with sessions() as session:
        entries = session.scalars(select(JournalEntry)).all()
        assert len(entries) == 1
        assert entries[0].reference == f"payout:btc:{'aa' * 32}:0"
        assert entries[0].kind == "mining_payout"
        assert entries[0].actor == "owner:ops"
        assert len(entries[0].postings) == 4  # node wallet, alice, bob, fee: no zero legs
        assert verify(session).ok


def test_split_twice_credits_once_and_a_different_amount_is_refused(
    mining: MiningService, members: Members, sessions: sessionmaker[Session]
) -> None:
    alice, _, _ = members
    mining.register(alice, "azc", "rig")
    first, created = mining.split(payout(pool="azc", amount=5_000_000_000), {"rig": 1.0})
    again, created_again = mining.split(payout(pool="azc", amount=5_000_000_000), {"rig": 99.0})
    assert created and not created_again
    assert again == first
    assert balance(sessions, AZC, member=alice) == 5_000_000_000 - 125_000_000
    with pytest.raises(PayoutConflictError):
        mining.split(payout(pool="azc", amount=4_000_000_000), {"rig": 1.0})
    with sessions() as session:
        assert session.scalar(select(func.count(JournalEntry.id))) == 1


def test_immature_payouts_are_refused(
    mining: MiningService, members: Members, sessions: sessionmaker[Session]
) -> None:
    alice, _, _ = members
    mining.register(alice, "azc", "rig")
    with pytest.raises(ImmaturePayoutError):  # coinbase: 100 blocks on both chains
        mining.split(payout("cb", pool="azc", confirmations=99), {"rig": 1.0})
    with pytest.raises(ImmaturePayoutError):  # ordinary payout: the pool's setting (10)
        mining.split(payout("tx", pool="azc", confirmations=9, coinbase=False), {"rig": 1.0})
    assert balance(sessions, AZC, member=alice) == 0
    assert mining.payouts() == []
    mining.split(payout("cb", pool="azc", confirmations=100), {"rig": 1.0})
    mining.split(payout("tx", pool="azc", confirmations=10, coinbase=False), {"rig": 1.0})
    assert len(mining.payouts()) == 2


def test_unknown_workers_go_to_suspense_and_are_shown_to_the_owner(
    mining: MiningService, members: Members, sessions: sessionmaker[Session]
) -> None:
    alice, _, _ = members
    mining.register(alice, "btc", "alice.rig")
    view, _ = mining.split(
        payout("p1", amount=1_000, pool="btc"),
        {"alice.rig": 1.0, "stranger.1": 2.0, "stranger.2": 1.0},
    )
    # fee 10; 990: alice floor(990/4)=247, unknown floor(990*3/4)=742, remainder 1
    assert (view.fee, view.unattributed_amount, view.remainder) == (10, 742, 1)
    assert view.unknown_workers == (("stranger.1", 2.0), ("stranger.2", 1.0))
    assert balance(sessions, SATS, member=alice) == 247
    assert balance(sessions, SATS, system=SUSPENSE) == 742
    assert balance(sessions, SATS, system=MINING_POOL) == 1
    mining.split(payout("p2", amount=1_000, pool="btc"), {"stranger.1": 5.0})
    unknown = {(u.worker, u.payouts, u.work) for u in mining.unknown_workers("btc")}
    assert unknown == {("stranger.1", 2, 7.0), ("stranger.2", 1, 1.0)}
    # registering later credits nothing retroactively (the owner decides on suspense) and
    # takes the worker off the unknown list
    mining.register(alice, "btc", "stranger.2")
    assert balance(sessions, SATS, member=alice) == 247
    assert [u.worker for u in mining.unknown_workers()] == ["stranger.1"]


def test_a_window_overlapping_an_earlier_payout_is_refused(
    mining: MiningService, members: Members, sessions: sessionmaker[Session]
) -> None:
    alice, _, _ = members
    mining.register(alice, "btc", "rig")
    assert mining.last_window_end("btc") is None
    mining.split(PoolPayout("btc", "one", 1_000, 100, True, 0, 600), {"rig": 1.0})
    with pytest.raises(WindowOverlapError, match="one"):
        mining.split(PoolPayout("btc", "two", 1_000, 100, True, 599, 1_200), {"rig": 1.0})
    mining.split(PoolPayout("azc", "two", 1_000, 100, True, 0, 600), {})  # other pool: fine
    mining.split(PoolPayout("btc", "three", 1_000, 100, True, 600, 1_200), {"rig": 1.0})
    assert mining.last_window_end("btc") == 1_200
    assert balance(sessions, SATS, member=alice) == 2 * 990
    found = mining.find("btc", "three")
    assert found is not None and found.window_start == 600
    assert mining.find("btc", "two") is None


def test_members_see_only_their_own_part(mining: MiningService, members: Members) -> None:
    alice, bob, carol = members
    mining.register(alice, "btc", "a")
    mining.register(bob, "btc", "b")
    mining.split(payout("p1"), {"a": 1.0, "b": 1.0, "x": 1.0})
    mining.split(payout("p2"), {"a": 1.0})
    mine = mining.payouts(member_id=bob)
    assert [p.payout_id for p in mine] == ["p1"]
    assert [(p.member_id, p.amount) for p in mine[0].parts] == [(bob, 330_000)]
    assert mine[0].unknown_workers == ()
    assert [p.payout_id for p in mining.payouts(member_id=alice)] == ["p2", "p1"]
    assert mining.payouts(member_id=carol) == []
    assert len(mining.payouts()[1].parts) == 2


def test_bad_payouts_are_refused(mining: MiningService, members: Members) -> None:
    for bad, work in [
        (payout(amount=0), {}),
        (payout(pool="ltc"), {}),
        (payout(payout_id=""), {}),
        (PoolPayout("btc", "w", 10, 100, True, 5, 5), {}),
        (payout(), {"rig": -1.0}),
    ]:
        with pytest.raises(MiningError):
            mining.split(bad, work)
    assert mining.payouts() == []


_ids = itertools.count()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    amount=st.integers(1, 21 * 10**14),
    work=st.dictionaries(
        st.sampled_from(["a1", "a2", "b1", "c1", "ghost1", "ghost2"]),
        st.floats(0, 1e12, allow_nan=False, allow_infinity=False),
        max_size=6,
    ),
)
def test_any_split_balances_and_never_credits_unknown_work(
    mining: MiningService,
    members: Members,
    sessions: sessionmaker[Session],
    amount: int,
    work: dict[str, float],
) -> None:
    alice, bob, carol = members
    for member, name in ((alice, "a1"), (alice, "a2"), (bob, "b1"), (carol, "c1")):
        mining.register(member, "btc", name)
    before = {m: balance(sessions, SATS, member=m) for m in members}
    pid = f"h{next(_ids)}"
    view, _ = mining.split(payout(pid, amount), work)
    again, created = mining.split(payout(pid, amount), work)
    assert again == view and not created
    gained = {m: balance(sessions, SATS, member=m) - before[m] for m in members}
    assert all(g >= 0 for g in gained.values())
    assert sum(gained.values()) + view.fee + view.unattributed_amount + view.remainder == amount
    owners = {"a1": alice, "a2": alice, "b1": bob, "c1": carol}
    for m in members:
        if not any(work.get(n, 0.0) > 0 for n, o in owners.items() if o == m):
            assert gained[m] == 0  # zero or no work: nothing
    if not any(work.get(n, 0.0) > 0 for n in owners):
        assert sum(gained.values()) == 0  # only unknown work: no member gets anything
    with sessions() as session:
        assert verify(session).ok


def test_concurrent_splits_of_one_payout_credit_once(
    mining: MiningService, members: Members, sessions: sessionmaker[Session]
) -> None:
    alice, _, _ = members
    mining.register(alice, "btc", "rig")
    barrier = threading.Barrier(6)

    def split_once() -> bool:
        barrier.wait()
        return mining.split(payout("race", 10_000), {"rig": 1.0})[1]

    with ThreadPoolExecutor(6) as pool:
        created = list(pool.map(lambda _: split_once(), range(6)))
    assert created.count(True) == 1
    assert balance(sessions, SATS, member=alice) == 9_900
    with sessions() as session:
        assert session.scalar(select(func.count(JournalEntry.id))) == 1
        assert verify(session).ok
