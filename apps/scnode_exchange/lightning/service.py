"""Lightning deposits: a member's invoice, and its credit — exactly once — when it is paid.

Exactly once, whatever restarts: the invoice row's state and the journal entry's unique
reference ``ln:invoice:<payment hash>`` change in one transaction, and a second credit of the
same invoice finds the row credited (or the reference taken) and does nothing. The label the
Lightning API gives an invoice is ``<member id>:<idempotency key>``, so a paid invoice is
credited to its member even when the exchange died between asking for it and recording it.

Amounts: invoices are made for whole sats; a payment that overpays (lightningd accepts up to
twice the amount) is credited in whole sats received, the msat remainder stays with the node.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.ledger import Ledger
from scnode_exchange.ledger.models import Member, utcnow
from scnode_exchange.ledger.service import NODE_WALLET, SATS
from scnode_exchange.lightning.models import LightningCursor, LightningInvoice

log = logging.getLogger(__name__)
CURSOR = "events"


class LightningDepositError(Exception):
    """A request refused for a reason the member must fix."""


@dataclass(frozen=True)
class Credit:
    """What one credit attempt did."""

    payment_hash: str
    member_id: int | None
    sats: int
    credited: bool  # False: already credited, or not an exchange invoice


def reference(payment_hash: str) -> str:
    return f"ln:invoice:{payment_hash}"


def member_of(label: str | None) -> tuple[int, str] | None:
    """(member id, idempotency key) from an exchange invoice label ``<member id>:<key>``."""
    if not label:
        return None
    member, sep, key = label.partition(":")
    if not sep or not member.isdigit() or not key:
        return None
    return int(member), key


class LightningDepositService:
    """Invoice rows and credits on the exchange database."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def record(self, member_id: int, key: str, invoice: dict[str, Any], amount_sats: int) -> None:
        """Keep an invoice the Lightning API made (again: the same key gives the same row)."""
        with self.sessions.begin() as session:
            self._record(session, member_id, key, invoice, amount_sats)

    def _record(
        self,
        session: Session,
        member_id: int,
        key: str,
        invoice: dict[str, Any],
        amount_sats: int,
    ) -> LightningInvoice:
        payment_hash = str(invoice["payment_hash"])
        row = session.scalar(
            select(LightningInvoice)
            .where(LightningInvoice.payment_hash == payment_hash)
            .with_for_update()
        )
        if row is not None:
            return row
        row = LightningInvoice(
            member_id=member_id,
            idempotency_key=key,
            payment_hash=payment_hash,
            bolt11=str(invoice.get("bolt11") or ""),
            amount_sats=amount_sats,
            description=str(invoice.get("description") or ""),
            state="unpaid",
            expires_at=datetime.fromtimestamp(int(invoice.get("expires_at") or 0), UTC),
        )
        session.add(row)
        session.flush()
        return row

    def credit(self, invoice: dict[str, Any], cursor: int | None = None) -> Credit:
        """Credit a paid invoice (a Lightning API invoice or ``invoice_paid`` event body) to
        its member, once; optionally store the event cursor in the same transaction."""
        payment_hash = str(invoice["payment_hash"])
        received = int(invoice.get("amount_received_msat") or 0)
        with self.sessions.begin() as session:
            result = self._credit(session, invoice, payment_hash, received)
            if cursor is not None:
                self._set_cursor(session, cursor)
        if result.credited:
            log.info(
                "Lightning deposit %s: %d sats to member %s",
                payment_hash,
                result.sats,
                result.member_id,
            )
        return result

    def _credit(
        self, session: Session, invoice: dict[str, Any], payment_hash: str, received: int
    ) -> Credit:
        row = session.scalar(
            select(LightningInvoice)
            .where(LightningInvoice.payment_hash == payment_hash)
            .with_for_update()
        )
        if row is None:
            owner = member_of(invoice.get("label"))
            amount = invoice.get("amount_msat")
            if (
                owner is None
                or session.get(Member, owner[0]) is None
                or not isinstance(amount, int)
                or amount <= 0
                or amount % 1000
            ):
                return Credit(payment_hash, None, 0, False)  # not an exchange invoice
            row = self._record(session, owner[0], owner[1], invoice, amount // 1000)
        if row.state == "credited":
            return Credit(payment_hash, row.member_id, row.credited_sats or 0, False)
        sats = received // 1000
        if sats < row.amount_sats:
            log.error(
                "Lightning deposit %s: received %d msat for a %d sat invoice; not credited",
                payment_hash,
                received,
                row.amount_sats,
            )
            return Credit(payment_hash, row.member_id, 0, False)
        ledger = Ledger(session)
        entry = ledger.transfer(
            "deposit",
            f"Lightning deposit {payment_hash}",
            ledger.system_account(NODE_WALLET, SATS),
            ledger.member_account(row.member_id, SATS),
            sats,
            reference=reference(payment_hash),
        )
        row.state = "credited"
        row.amount_received_msat = received
        row.credited_sats = sats
        row.credit_entry_id = entry.id
        row.credited_at = utcnow()
        return Credit(payment_hash, row.member_id, sats, True)

    def expire(self, payment_hash: str) -> None:
        with self.sessions.begin() as session:
            row = session.scalar(
                select(LightningInvoice).where(LightningInvoice.payment_hash == payment_hash)
            )
            if row is not None and row.state == "unpaid":
                row.state = "expired"

    def unpaid(self) -> list[str]:
        """Payment hashes of the invoices not yet credited nor expired."""
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(LightningInvoice.payment_hash).where(LightningInvoice.state == "unpaid")
                )
            )

    def has_invoice(self, member_id: int, key: str) -> bool:
        with self.sessions() as session:
            found = session.scalar(
                select(LightningInvoice.id).where(
                    LightningInvoice.member_id == member_id,
                    LightningInvoice.idempotency_key == key,
                )
            )
            return found is not None

    def invoices_of(self, member_id: int, limit: int = 100) -> list[LightningInvoice]:
        with self.sessions() as session:
            rows = session.scalars(
                select(LightningInvoice)
                .where(LightningInvoice.member_id == member_id)
                .order_by(LightningInvoice.id.desc())
                .limit(limit)
            )
            return list(rows)

    # -- cursor ------------------------------------------------------------------------------
    def cursor(self) -> int | None:
        with self.sessions() as session:
            row = session.get(LightningCursor, CURSOR)
            return None if row is None else row.cursor

    def set_cursor(self, cursor: int) -> None:
        with self.sessions.begin() as session:
            self._set_cursor(session, cursor)

    @staticmethod
    def _set_cursor(session: Session, cursor: int) -> None:
        row = session.get(LightningCursor, CURSOR, with_for_update=True)
        if row is None:
            session.add(LightningCursor(name=CURSOR, cursor=cursor))
        else:
            row.cursor = cursor
            row.updated_at = utcnow()
