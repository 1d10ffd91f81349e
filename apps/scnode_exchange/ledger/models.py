"""Tables of the double-entry ledger.

Sign convention: an account's balance is the sum of its postings. A member account's balance
is what the exchange owes the member (never below zero); the node's wallet accounts carry the
matching negative amounts, so the sum over all accounts of one asset is always zero.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scnode_exchange.db import Base


def utcnow() -> datetime:
    """Timezone-aware now (UTC)."""
    return datetime.now(UTC)


class Asset(Base):
    """A unit of account: SATS, AZC or the configured microcurrency (amounts in its base unit)."""

    __tablename__ = "assets"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    decimals: Mapped[int] = mapped_column()
    unit: Mapped[str] = mapped_column(String(16))


class Member(Base):
    """A member of the circle; frozen members cannot move funds out."""

    __tablename__ = "members"

    id: Mapped[int] = mapped_column(primary_key=True)
    handle: Mapped[str] = mapped_column(String(128), unique=True)
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    frozen_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Account(Base):
    """One asset's account of a member or of the system (node wallet, fees, suspense, ...).

    ``balance`` and ``reserved`` are running totals maintained in the same transaction as the
    postings and holds that change them; ``verify()`` recomputes both from scratch.
    """

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("asset", "member_id"),
        UniqueConstraint("asset", "system_name"),
        CheckConstraint("(member_id IS NULL) <> (system_name IS NULL)", name="member_xor_system"),
        CheckConstraint(
            "member_id IS NULL OR (balance >= 0 AND reserved >= 0 AND reserved <= balance)",
            name="member_not_negative",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    asset: Mapped[str] = mapped_column(ForeignKey("assets.code"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), default=None)
    system_name: Mapped[str | None] = mapped_column(String(32), default=None)
    balance: Mapped[int] = mapped_column(default=0)
    reserved: Mapped[int] = mapped_column(default=0)

    @property
    def available(self) -> int:
        """Balance not held by open holds."""
        return self.balance - self.reserved

    @property
    def is_member(self) -> bool:
        """True for a member's account (the ones that may never go negative)."""
        return self.member_id is not None


class JournalEntry(Base):
    """An immutable, balanced set of postings: one movement of money with its why."""

    __tablename__ = "journal_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(String(200), unique=True, default=None)
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    postings: Mapped[list[Posting]] = relationship(
        back_populates="entry", order_by="Posting.id", lazy="selectin"
    )


class Posting(Base):
    """One leg of a journal entry: a signed amount on one account."""

    __tablename__ = "postings"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="nonzero"),
        Index("ix_postings_account_id", "account_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column()

    entry: Mapped[JournalEntry] = relationship(back_populates="postings")


class Hold(Base):
    """A reservation of part of a member account's balance (an open order, a withdrawal).

    ``remaining`` shrinks as the hold is settled or released; the account's ``reserved`` is the
    sum of its open holds' ``remaining``.
    """

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_in_range"),
        Index("ix_holds_account_id_open", "account_id", "is_open"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column()
    remaining: Mapped[int] = mapped_column()
    reference: Mapped[str | None] = mapped_column(String(200), unique=True, default=None)
    reason: Mapped[str] = mapped_column(Text)
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


def _immutable(_mapper: Any, _connection: Any, target: Any) -> None:
    raise RuntimeError(f"{type(target).__name__} rows are immutable")


for _model in (JournalEntry, Posting):
    event.listen(_model, "before_update", _immutable)
    event.listen(_model, "before_delete", _immutable)
