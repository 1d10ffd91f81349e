"""Lightning deposits on the exchange database (SQLite, and PostgreSQL when configured):
a paid invoice is credited to its member's SATS balance exactly once, whatever repeats."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.ledger import Ledger
from scnode_exchange.ledger.models import Account, JournalEntry
from scnode_exchange.lightning.models import LightningInvoice
from scnode_exchange.lightning.service import LightningDepositService, member_of

HASH = "ab" * 32


def new_member(sessions: sessionmaker[Session], handle: str) -> int:
    with sessions.begin() as session:
        return Ledger(session).create_member(handle).id


def sats_of(sessions: sessionmaker[Session], member_id: int) -> int:
    with sessions() as session:
        return Ledger(session).member_account(member_id, "SATS").balance


def paid(
    member_id: int, key: str, msat: int, received: int, payment_hash: str = HASH
) -> dict[str, Any]:
    return {
        "label": f"{member_id}:{key}",
        "payment_hash": payment_hash,
        "bolt11": "lnbcrt1" + "q" * 40,
        "amount_msat": msat,
        "amount_received_msat": received,
        "description": "deposit",
        "expires_at": 2_000_000_000,
        "status": "paid",
    }


def test_a_paid_invoice_is_credited_once_and_the_ledger_balances(
    sessions: sessionmaker[Session],
) -> None:
    service = LightningDepositService(sessions)
    alice = new_member(sessions, "alice")
    invoice = paid(alice, "deposit-01", 25_000_000, 25_000_000)
    service.record(alice, "deposit-01", invoice, 25_000)
    service.record(alice, "deposit-01", invoice, 25_000)  # the same key again: one row
    assert service.unpaid() == [HASH]
    first = service.credit(invoice, cursor=7)
    assert (first.credited, first.member_id, first.sats) == (True, alice, 25_000)
    assert not service.credit(invoice, cursor=8).credited  # a replayed event
    assert not LightningDepositService(sessions).credit(invoice).credited  # after a restart
    assert sats_of(sessions, alice) == 25_000
    assert service.cursor() == 8
    assert service.unpaid() == []
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(LightningInvoice)) == 1
        entries = session.scalars(
            select(JournalEntry).where(JournalEntry.reference == f"ln:invoice:{HASH}")
        ).all()
        assert len(entries) == 1
        assert session.scalar(select(func.sum(Account.balance)).where(Account.asset == "SATS")) == 0


def test_an_invoice_the_exchange_never_recorded_is_credited_by_its_label(
    sessions: sessionmaker[Session],
) -> None:
    """The exchange died between asking the Lightning API and recording the invoice."""
    service = LightningDepositService(sessions)
    bob = new_member(sessions, "bob")
    overpaid = paid(bob, "deposit-02", 10_000_000, 10_000_999)  # lightningd accepts overpaying
    assert service.credit(overpaid).credited
    assert sats_of(sessions, bob) == 10_000  # whole sats; the msat remainder stays on the node


def test_invoices_that_are_not_the_exchanges_are_left_alone(
    sessions: sessionmaker[Session],
) -> None:
    service = LightningDepositService(sessions)
    carol = new_member(sessions, "carol")
    for label in ("owner-coffee", "alice:deposit-1", f"{carol + 999}:deposit-1", None):
        invoice = {**paid(carol, "x" * 8, 5_000, 5_000), "label": label}
        assert not service.credit(invoice).credited
    assert sats_of(sessions, carol) == 0
    assert member_of(f"{carol}:key:with:colons") == (carol, "key:with:colons")


def test_an_underpaid_invoice_is_not_credited(sessions: sessionmaker[Session]) -> None:
    service = LightningDepositService(sessions)
    dave = new_member(sessions, "dave")
    invoice = paid(dave, "deposit-03", 8_000_000, 7_999_000)
    service.record(dave, "deposit-03", invoice, 8_000)
    assert not service.credit(invoice).credited
    assert sats_of(sessions, dave) == 0
    assert service.unpaid() == [HASH]
