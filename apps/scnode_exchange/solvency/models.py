"""Table of solvency alerts: one row per episode of a shortfall in one asset (what the node
holds < what it owes its members), opened once when the shortfall is confirmed, updated while
it lasts and cleared when the margin is back at zero or above."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from scnode_exchange.db import Base
from scnode_exchange.ledger.models import utcnow


class SolvencyAlert(Base):
    """A shortfall of ``asset``: open while ``cleared_at`` is NULL (at most one per asset)."""

    __tablename__ = "solvency_alerts"
    __table_args__ = (Index("ix_solvency_alerts_asset_cleared_at", "asset", "cleared_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    asset: Mapped[str] = mapped_column(ForeignKey("assets.code"))
    # the figures of the check that opened the alert
    shortfall: Mapped[int] = mapped_column()
    holdings: Mapped[int] = mapped_column()
    liabilities: Mapped[int] = mapped_column()
    # the largest and the latest shortfall seen while the alert was open
    worst_shortfall: Mapped[int] = mapped_column()
    last_shortfall: Mapped[int] = mapped_column()
    detail: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    cleared_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # the margin of the check that cleared it
    cleared_margin: Mapped[int | None] = mapped_column(default=None)
