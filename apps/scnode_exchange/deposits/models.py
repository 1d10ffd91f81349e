"""Tables of deposits: addresses handed to members, chain outputs seen paying them, the reorg
alerts an owner resolves, and each chain's event cursor (where the watcher resumes).

A deposit is one output (``chain``, ``txid``, ``vout``) paying a member's deposit address.
``state``: ``pending`` (seen, fewer than N confirmations) → ``credited`` (journal entry
``deposit:<chain>:<txid>:<vout>``); ``reorged`` (left the chain before N, never credited; back
to ``pending`` if it returns); ``suspense`` (left the chain after crediting: reversed into the
suspense account, an alert row waits for the owner).
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

DEPOSIT_STATES = ("pending", "credited", "reorged", "suspense")


class DepositAddress(Base):
    """An address of the node's wallet labelled with a member, handed out for deposits."""

    __tablename__ = "deposit_addresses"
    __table_args__ = (
        UniqueConstraint("chain", "address"),
        Index("ix_deposit_addresses_member_chain", "member_id", "chain"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    chain: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Deposit(Base):
    """One output paying a deposit address, with its confirmations and credit state."""

    __tablename__ = "deposits"
    __table_args__ = (
        UniqueConstraint("chain", "txid", "vout"),
        CheckConstraint(
            "state IN ('pending', 'credited', 'reorged', 'suspense')", name="known_state"
        ),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_deposits_member_id", "member_id", "id"),
        Index("ix_deposits_chain_state", "chain", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    chain: Mapped[str] = mapped_column(String(32))
    txid: Mapped[str] = mapped_column(String(64))
    vout: Mapped[int] = mapped_column()
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    address: Mapped[str] = mapped_column(String(128))
    asset: Mapped[str] = mapped_column(ForeignKey("assets.code"))
    amount: Mapped[int] = mapped_column()
    confirmations: Mapped[int] = mapped_column(default=0)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    block_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    block_height: Mapped[int | None] = mapped_column(default=None)
    # the block the credit was based on: a different block below N confirmations is a reorg
    credited_block_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    credit_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("journal_entries.id"), default=None
    )
    reversal_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("journal_entries.id"), default=None
    )
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    credited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    reversed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    @property
    def key(self) -> str:
        """``<chain>:<txid>:<vout>``, the deposit's identity everywhere."""
        return f"{self.chain}:{self.txid}:{self.vout}"


class DepositAlert(Base):
    """A credited deposit that left the chain: what was taken back from the member, what the
    member still owes (receivable), and the owner's resolution once there is one."""

    __tablename__ = "deposit_alerts"
    __table_args__ = (
        UniqueConstraint("deposit_id"),
        Index("ix_deposit_alerts_resolved_at", "resolved_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    deposit_id: Mapped[int] = mapped_column(ForeignKey("deposits.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    chain: Mapped[str] = mapped_column(String(32))
    asset: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column()
    taken_from_member: Mapped[int] = mapped_column()
    receivable: Mapped[int] = mapped_column()
    member_frozen: Mapped[bool] = mapped_column()
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    resolved_by: Mapped[str | None] = mapped_column(String(128), default=None)
    resolution: Mapped[str | None] = mapped_column(Text, default=None)


class DepositCursor(Base):
    """The last chain API event the watcher has fully applied, per chain."""

    __tablename__ = "deposit_cursors"

    chain: Mapped[str] = mapped_column(String(32), primary_key=True)
    cursor: Mapped[int] = mapped_column(default=0)
    tip_height: Mapped[int | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
