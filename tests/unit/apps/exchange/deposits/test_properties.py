"""Random interleavings of observations (confirmations up and down, outputs leaving and
coming back, verified or stale), member spending and owner resolutions keep the deposit and
ledger invariants: the ledger audits clean, no output is credited or reversed twice, a credit
only follows N confirmations, suspense equals the open alerts and the receivable what their
members still owe (open alerts and written-off ones)."""

from __future__ import annotations

import contextlib
import itertools

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.deposits.service import DepositError, DepositService, Observation
from scnode_exchange.ledger import (
    OWNER_RECEIVABLE,
    SATS,
    SUSPENSE,
    InsufficientFundsError,
    JournalEntry,
    Ledger,
    MemberFrozenError,
    verify,
)

N = 3
_examples = itertools.count()

observe = st.tuples(
    st.just("observe"),
    st.integers(0, 2),  # which output
    st.sampled_from([-1, 0, 1, 2, 3, 3, 4, 5]),  # confirmations
    st.sampled_from(["A", "B"]),  # block
    st.booleans(),  # verified (read from the wallet)
)
spend = st.tuples(st.just("spend"), st.integers(1, 80_000))
resolve = st.tuples(st.just("resolve"), st.sampled_from(["recredit", "write_off"]))
steps = st.lists(st.one_of(observe, observe, observe, spend, resolve), min_size=6, max_size=25)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=steps)
def test_deposit_invariants_hold_under_random_interleavings(
    sessions: sessionmaker[Session],
    deposits: DepositService,
    members: tuple[int, int],
    steps: list[tuple[object, ...]],
) -> None:
    alice, bob = members
    run = next(_examples)
    deposits.record_address(alice, "bitcoin", "bcrt1qalice")  # idempotent
    deposits.record_address(bob, "bitcoin", "bcrt1qbob")
    txids = [f"{run:032x}{k:032x}" for k in range(3)]
    reached_n: set[str] = set()
    for step in steps:
        if step[0] == "observe":
            _, k, conf, block, verified = step
            assert isinstance(k, int) and isinstance(conf, int)
            address = "bcrt1qalice" if k % 2 == 0 else "bcrt1qbob"
            before = deposits.get("bitcoin", txids[k], 0)
            if conf >= N and (before is None or before.state in ("pending", "reorged")):
                reached_n.add(txids[k])
            deposits.apply(
                [Observation("bitcoin", txids[k], 0, address, 10_000 * (k + 1), conf,
                             str(block) if conf > 0 else None, verified=bool(verified))]
            )  # fmt: skip
        elif step[0] == "spend":
            amount = step[1]
            assert isinstance(amount, int)
            with (
                contextlib.suppress(InsufficientFundsError, MemberFrozenError),
                sessions.begin() as session,
            ):
                ledger = Ledger(session)
                ledger.transfer("transfer", "spend", ledger.member_account(alice, SATS),
                                ledger.member_account(bob, SATS), amount)  # fmt: skip
        else:
            for alert in deposits.alerts():
                with contextlib.suppress(DepositError):
                    deposits.resolve_alert(alert.id, action=str(step[1]), actor="owner:p",
                                           reason="property test")  # fmt: skip
    with sessions() as session:
        report = verify(session)
        assert report.ok, report
        for txid in txids:
            for kind, ref in (("deposit", "deposit:"), ("deposit_reversal", "deposit-reversal:")):
                count = session.scalar(
                    select(func.count(JournalEntry.id)).where(
                        JournalEntry.reference == f"{ref}bitcoin:{txid}:0"
                    )
                )
                assert count in (0, 1), (kind, txid)
                if kind == "deposit_reversal" and count:
                    event("a credit was reversed")
                if kind == "deposit" and count:
                    assert txid in reached_n
        ledger = Ledger(session)
        suspense = ledger.system_account(SUSPENSE, SATS).balance
        receivable = ledger.system_account(OWNER_RECEIVABLE, SATS).balance
    alerts = deposits.alerts(include_resolved=True)
    open_alerts = [a for a in alerts if a.resolved_at is None]
    written_off = [a for a in alerts if (a.resolution or "").startswith("write_off")]
    assert suspense == sum(a.amount for a in open_alerts)
    # a write-off leaves the member's debt for the owner to settle; a re-credit clears it
    assert receivable == -sum(a.receivable for a in open_alerts + written_off)
