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


# Lightning payments (issue 8 item 3, second half). ``kind`` external: paid through the node's
# Lightning API; internal: an invoice this exchange made for another member, settled in the
# ledger alone. States: reserved (hold placed) → sending (Lightning API key fixed, committed
# before the first call) → complete (settled) | failed (hold released). Internal payments are
# complete from the start.
PAYMENT_STATES = ("reserved", "sending", "complete", "failed")
PAYMENT_KINDS = ("external", "internal")


class LightningPayment(Base):
    """A member's payment of a BOLT11 invoice (amounts in sats, the invoice's own in msat)."""

    __tablename__ = "lightning_payments"
    __table_args__ = (
        UniqueConstraint("member_id", "idempotency_key"),
        UniqueConstraint("send_key"),
        CheckConstraint(
            "state IN ('reserved', 'sending', 'complete', 'failed')", name="known_state"
        ),
        CheckConstraint("kind IN ('external', 'internal')", name="known_kind"),
        CheckConstraint(
            "amount_msat > 0 AND amount_sats > 0 AND max_fee_sats >= 0", name="amounts_positive"
        ),
        Index("ix_lightning_payments_state", "state"),
        Index("ix_lightning_payments_member_id_created_at", "member_id", "created_at"),
        Index("ix_lightning_payments_payment_hash", "payment_hash"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    bolt11: Mapped[str] = mapped_column(Text)
    payment_hash: Mapped[str] = mapped_column(String(64))
    destination: Mapped[str] = mapped_column(String(66), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    amount_msat: Mapped[int] = mapped_column()
    amount_sats: Mapped[int] = mapped_column()  # amount_msat rounded up: what the member pays
    max_fee_sats: Mapped[int] = mapped_column()  # reserved on top of the amount
    fee_sats: Mapped[int | None] = mapped_column(default=None)  # charged (actual fee, rounded up)
    fee_msat: Mapped[int | None] = mapped_column(default=None)  # what lightningd paid
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("holds.id"), default=None)
    send_key: Mapped[str | None] = mapped_column(String(64), default=None)
    api_state: Mapped[str | None] = mapped_column(String(16), default=None)
    preimage: Mapped[str | None] = mapped_column(String(64), default=None)
    payee_member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), default=None)
    invoice_id: Mapped[int | None] = mapped_column(
        ForeignKey("lightning_invoices.id"), default=None
    )
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), default=None)
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
