"""Found by the combined machine: a deposit reorged after credit, re-credited by the owner when
it came back, then reorged away AGAIN. Before the fix the second reversal reused the first
one's reference and alert row: ``apply`` failed on the alert's unique deposit (the watcher's
batch could never commit — crediting on that chain stopped) and the member kept the coins the
wallet no longer had. Now each episode has its own entries and the alert opens again; the
solvency margin stays whole (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.deposits.service import ChainDepositConfig, DepositService, Observation
from scnode_exchange.ledger import SATS, SUSPENSE, JournalEntry, Ledger, verify
from scnode_exchange.solvency import SolvencyService


def test_a_recredited_deposit_reorged_again_is_reversed_again(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        member = Ledger(session).create_member("alice").id
    deposits = DepositService(sessions, {"bitcoin": ChainDepositConfig(SATS, 2)})
    deposits.record_address(member, "bitcoin", "bcrt1qalice")
    solvency = SolvencyService(sessions, {"bitcoin": SATS}, confirm_checks=1)
    txid = "ab" * 32

    def seen(confirmations: int, block: str | None) -> None:
        deposits.apply([Observation("bitcoin", txid, 0, "bcrt1qalice", 1_000, confirmations,
                                    block, verified=True)])  # fmt: skip

    def balance() -> tuple[int, int]:
        with sessions() as session:
            ledger = Ledger(session)
            return (ledger.member_account(member, SATS).balance,
                    ledger.system_account(SUSPENSE, SATS).balance)  # fmt: skip

    def margin(wallet: int) -> int | None:
        report = solvency.assess({"bitcoin": wallet})
        solvency.record(report)
        return report.assets[SATS].margin

    seen(2, "B1")
    assert balance() == (1_000, 0) and margin(1_000) == 0
    seen(0, None)  # reorged out, back in the mempool
    assert balance() == (0, 1_000) and margin(0) == 0
    seen(2, "B2")
    (alert,) = deposits.alerts()
    deposits.resolve_alert(alert.id, action="recredit", actor="owner", reason="it is back")
    assert balance() == (1_000, 0) and margin(1_000) == 0

    seen(-1, None)  # and gone again
    assert balance() == (0, 1_000) and margin(0) == 0
    (again,) = deposits.alerts()
    assert again.id == alert.id and again.resolved_at is None
    assert "reversal 2" in again.detail and "recredit: it is back" in again.detail
    assert deposits.get("bitcoin", txid, 0).state == "suspense"  # type: ignore[union-attr]

    seen(3, "B3")  # back for good: the owner re-credits the second episode too
    deposits.resolve_alert(alert.id, action="recredit", actor="owner", reason="back again")
    assert balance() == (1_000, 0) and margin(1_000) == 0
    with sessions() as session:
        assert verify(session).ok
        references = set(session.scalars(select(JournalEntry.reference)))
    key = f"bitcoin:{txid}:0"
    assert {f"deposit-reversal:{key}", f"deposit-reversal:{key}:2", f"deposit-recredit:{key}",
            f"deposit-recredit:{key}:2"} <= references  # fmt: skip
    assert solvency.alerts(include_cleared=True) == []
