"""Tables of mining: the worker registry, pool payouts split among members, the work each
payout was split by, and each member's part.

``mining_workers``: one row per (pool, worker name) — the member whose work that worker's
shares are. ``mining_payouts``: one row per pool payout (``pool`` + ``payout_id`` =
``txid:vout`` or a reward id), written in the same transaction as its journal entry
``payout:<pool>:<payout_id>``. ``mining_payout_work``: the work per worker the split used (the
evidence; ``member_id`` NULL = unknown worker). ``mining_payout_parts``: what each member got.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from scnode_exchange.db import Base
from scnode_exchange.ledger.models import utcnow

POOLS = ("btc", "azc")


class MiningWorker(Base):
    """A worker name registered by (or for) a member, unique per pool."""

    __tablename__ = "mining_workers"
    __table_args__ = (
        UniqueConstraint("pool", "name"),
        CheckConstraint("pool IN ('btc', 'azc')", name="known_pool"),
        Index("ix_mining_workers_member_id", "member_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pool: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(128))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class MiningPayout(Base):
    """A pool payout to the node and how it was split (all amounts in the asset's base unit)."""

    __tablename__ = "mining_payouts"
    __table_args__ = (
        UniqueConstraint("pool", "payout_id"),
        CheckConstraint("pool IN ('btc', 'azc')", name="known_pool"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "fee + members_amount + unattributed_amount + remainder = amount", name="parts_sum"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pool: Mapped[str] = mapped_column(String(8))
    payout_id: Mapped[str] = mapped_column(String(128))
    asset: Mapped[str] = mapped_column(ForeignKey("assets.code"))
    amount: Mapped[int] = mapped_column()
    confirmations: Mapped[int] = mapped_column()
    coinbase: Mapped[bool] = mapped_column()
    window_start: Mapped[int] = mapped_column()
    window_end: Mapped[int] = mapped_column()
    fee_bps: Mapped[int] = mapped_column()
    fee: Mapped[int] = mapped_column()
    members_amount: Mapped[int] = mapped_column()
    unattributed_amount: Mapped[int] = mapped_column()
    remainder: Mapped[int] = mapped_column()
    total_work: Mapped[float] = mapped_column(Float)
    unattributed_work: Mapped[float] = mapped_column(Float)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MiningPayoutWork(Base):
    """One worker's work in a payout's window (``member_id`` NULL: not registered then)."""

    __tablename__ = "mining_payout_work"
    __table_args__ = (
        UniqueConstraint("payout_id", "worker"),
        Index("ix_mining_payout_work_unknown", "member_id", "worker"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("mining_payouts.id"))
    worker: Mapped[str] = mapped_column(String(128))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), default=None)
    work: Mapped[float] = mapped_column(Float)


class MiningPayoutPart(Base):
    """What one member got from a payout, with the member's work in its window."""

    __tablename__ = "mining_payout_parts"
    __table_args__ = (
        UniqueConstraint("payout_id", "member_id"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        Index("ix_mining_payout_parts_member_id", "member_id", "payout_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("mining_payouts.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    work: Mapped[float] = mapped_column(Float)
    amount: Mapped[int] = mapped_column()
