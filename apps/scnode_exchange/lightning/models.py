"""Tables of Lightning deposits (LaaS): invoices made for members through the node's
Lightning API, and the cursor into that API's event journal.

An invoice's ``state``: ``unpaid`` → ``credited`` (journal entry ``ln:invoice:<payment
hash>``: node_wallet -a, member +a in SATS, the same SATS balance on-chain deposits credit) or
``expired`` (never paid; lightningd refuses to accept a payment for it any more).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from scnode_exchange.db import Base
from scnode_exchange.ledger.models import utcnow

INVOICE_STATES = ("unpaid", "credited", "expired")


class LightningInvoice(Base):
    """An invoice a member asked for to deposit SATS over Lightning."""

    __tablename__ = "lightning_invoices"
    __table_args__ = (
        UniqueConstraint("payment_hash"),
        UniqueConstraint("member_id", "idempotency_key"),
        CheckConstraint("state IN ('unpaid', 'credited', 'expired')", name="known_state"),
        CheckConstraint("amount_sats > 0", name="amount_positive"),
        Index("ix_lightning_invoices_member_id", "member_id", "id"),
        Index("ix_lightning_invoices_state", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    payment_hash: Mapped[str] = mapped_column(String(64))
    bolt11: Mapped[str] = mapped_column(Text)
    amount_sats: Mapped[int] = mapped_column()
    description: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="unpaid")
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    amount_received_msat: Mapped[int | None] = mapped_column(default=None)
    credited_sats: Mapped[int | None] = mapped_column(default=None)
    credit_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("journal_entries.id"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    credited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class LightningCursor(Base):
    """The last Lightning API event the watcher has fully applied."""

    __tablename__ = "lightning_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    cursor: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
