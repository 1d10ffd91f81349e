"""The owner's append-only audit log: who did what to whom, when and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, String, Text, event
from sqlalchemy.orm import Mapped, mapped_column

from scnode_exchange.db import Base
from scnode_exchange.ledger.models import utcnow


class OwnerAuditEntry(Base):
    """One owner action. Rows are never changed or deleted (the ORM refuses, like the journal);
    a money move also names its journal entry."""

    __tablename__ = "owner_audit_log"
    __table_args__ = (Index("ix_owner_audit_log_member_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), default=None)
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[str] = mapped_column(Text, default="{}")
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def _append_only(_mapper: Any, _connection: Any, target: Any) -> None:
    raise RuntimeError(f"{type(target).__name__} rows are append-only")


event.listen(OwnerAuditEntry, "before_update", _append_only)
event.listen(OwnerAuditEntry, "before_delete", _append_only)
