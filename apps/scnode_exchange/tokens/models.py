"""The ``member_api_tokens`` table: one row per token a member made (only a SHA-256 of its
secret is stored; the token itself is shown once, when it is made)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from scnode_exchange.db import Base
from scnode_exchange.ledger.models import utcnow


class MemberApiToken(Base):
    """A member's named, scoped API token; ``revoked_at`` set = dead for good."""

    __tablename__ = "member_api_tokens"
    __table_args__ = (Index("ix_member_api_tokens_member_id", "member_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    name: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(64))  # space-separated, sorted
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
