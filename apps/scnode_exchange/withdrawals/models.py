"""Tables of withdrawals: the requests with their live state, and the append-only history of
every state change (who, when, why)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column

from scnode_exchange.db import Base
from scnode_exchange.ledger.models import utcnow

# States. ``requested`` and ``reserved`` are written in the same transaction as the hold, so a
# request is never visible without its reservation. Terminal: confirmed, failed, cancelled,
# rejected (the last three released the hold: the member got the funds back).
REQUESTED = "requested"
RESERVED = "reserved"
AWAITING_APPROVAL = "awaiting_approval"
APPROVED = "approved"
SENDING = "sending"
BROADCAST = "broadcast"
CONFIRMED = "confirmed"
FAILED = "failed"
CANCELLED = "cancelled"
REJECTED = "rejected"

STATES = (
    REQUESTED,
    RESERVED,
    AWAITING_APPROVAL,
    APPROVED,
    SENDING,
    BROADCAST,
    CONFIRMED,
    FAILED,
    CANCELLED,
    REJECTED,
)
READY_TO_SEND = (RESERVED, APPROVED)
CANCELLABLE = (RESERVED, AWAITING_APPROVAL, APPROVED)
REFUNDED = (FAILED, CANCELLED, REJECTED)
TERMINAL = (CONFIRMED, *REFUNDED)

# Which state may follow which (every transition goes through WithdrawalService/_transition).
TRANSITIONS: dict[str, frozenset[str]] = {
    REQUESTED: frozenset({RESERVED}),
    RESERVED: frozenset({AWAITING_APPROVAL, SENDING, CANCELLED, REJECTED}),
    AWAITING_APPROVAL: frozenset({APPROVED, CANCELLED, REJECTED}),
    APPROVED: frozenset({SENDING, CANCELLED, REJECTED}),
    SENDING: frozenset({BROADCAST, FAILED}),
    BROADCAST: frozenset({CONFIRMED}),
    CONFIRMED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
    REJECTED: frozenset(),
}


class Withdrawal(Base):
    """One member's request to pay ``amount`` to ``address`` on ``chain``.

    The member pays ``amount + fee`` (both in ``asset`` base units), reserved by ``hold_id``
    from the request on. ``send_key`` (``wd-<id>``) is the chain API idempotency key, fixed
    before the first send attempt and never changed.
    """

    __tablename__ = "withdrawals"
    __table_args__ = (
        UniqueConstraint("member_id", "idempotency_key"),
        CheckConstraint("amount > 0 AND fee >= 0", name="amounts_positive"),
        Index("ix_withdrawals_state", "state"),
        Index("ix_withdrawals_member_id_created_at", "member_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    chain: Mapped[str] = mapped_column(String(32))
    asset: Mapped[str] = mapped_column(ForeignKey("assets.code"))
    address: Mapped[str] = mapped_column(String(128))
    amount: Mapped[int] = mapped_column()
    fee: Mapped[int] = mapped_column()
    idempotency_key: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(24))
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("holds.id"), default=None)
    send_key: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    fee_rate_sat_vb: Mapped[int | None] = mapped_column(default=None)
    txid: Mapped[str | None] = mapped_column(String(64), default=None)
    confirmations: Mapped[int] = mapped_column(default=0)
    network_fee: Mapped[int | None] = mapped_column(default=None)
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    @property
    def total(self) -> int:
        """What the member pays: amount plus the withdrawal fee."""
        return self.amount + self.fee


class WithdrawalEvent(Base):
    """One state change of a withdrawal (append-only: the ORM refuses updates and deletes)."""

    __tablename__ = "withdrawal_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    withdrawal_id: Mapped[int] = mapped_column(ForeignKey("withdrawals.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(24), default=None)
    to_state: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(128))
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def _immutable(_mapper: Any, _connection: Any, target: Any) -> None:
    raise RuntimeError(f"{type(target).__name__} rows are immutable")


event.listen(WithdrawalEvent, "before_update", _immutable)
event.listen(WithdrawalEvent, "before_delete", _immutable)
