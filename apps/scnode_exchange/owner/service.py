"""Owner operations. Each runs in one transaction with its audit row, so an action is either
done and audited, or neither."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.ledger import (
    OWNER_EQUITY,
    JournalEntry,
    Ledger,
    Member,
    UnknownAccountError,
)
from scnode_exchange.owner.models import OwnerAuditEntry


class OwnerOperations:
    """What the owner may do, each action recorded in ``owner_audit_log``."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    @staticmethod
    def record(
        session: Session,
        actor: str,
        action: str,
        reason: str,
        *,
        member_id: int | None = None,
        details: Mapping[str, Any] | None = None,
        entry_id: int | None = None,
    ) -> OwnerAuditEntry:
        """Append one audit row in the caller's transaction (also for other packages' owner
        actions, e.g. withdrawal approvals)."""
        row = OwnerAuditEntry(
            actor=actor,
            action=action,
            member_id=member_id,
            reason=reason,
            details=json.dumps(dict(details or {}), sort_keys=True),
            entry_id=entry_id,
        )
        session.add(row)
        session.flush()
        return row

    def create_member(self, actor: str, handle: str, reason: str) -> Member:
        """A new member with zero balances (there is no open registration)."""
        with self.sessions.begin() as session:
            member = Ledger(session).create_member(handle)
            self.record(
                session,
                actor,
                "create_member",
                reason,
                member_id=member.id,
                details={"handle": handle},
            )
            return member

    def adjust(
        self, actor: str, member_id: int, asset: str, amount: int, reason: str, key: str
    ) -> tuple[JournalEntry, bool]:
        """Credit (``amount`` > 0) or debit (< 0) a member against ``owner_equity``.

        ``key`` makes it idempotent: the same key again returns the first entry and
        ``False`` (nothing new done or audited). A debit needs that much available; a frozen
        member can still be adjusted (it is the owner acting).
        """
        if type(amount) is not int or amount == 0:
            raise ValueError("amount must be a non-zero integer")
        with self.sessions.begin() as session:
            ledger = Ledger(session)
            if session.get(Member, member_id) is None:
                raise UnknownAccountError(f"no member {member_id}")
            member_account = ledger.member_account(member_id, asset)
            equity = ledger.system_account(OWNER_EQUITY, asset)
            source, target = (equity, member_account) if amount > 0 else (member_account, equity)
            entry = ledger.transfer(
                "owner_adjustment",
                reason,
                source,
                target,
                abs(amount),
                reference=f"owner-adjust:{key}",
                actor=actor,
                allow_frozen=True,
            )
            seen = session.scalar(
                select(OwnerAuditEntry.id).where(OwnerAuditEntry.entry_id == entry.id)
            )
            if seen is not None:
                return entry, False
            self.record(
                session,
                actor,
                "adjust",
                reason,
                member_id=member_id,
                details={"asset": asset, "amount": amount, "key": key},
                entry_id=entry.id,
            )
            return entry, True

    def freeze(self, actor: str, member_id: int, reason: str) -> Member:
        """Stop the member's funds from moving out (orders, withdrawals)."""
        with self.sessions.begin() as session:
            member = Ledger(session).freeze(member_id, reason)
            self.record(session, actor, "freeze", reason, member_id=member_id)
            return member

    def unfreeze(self, actor: str, member_id: int, reason: str) -> Member:
        """Lift a freeze."""
        with self.sessions.begin() as session:
            member = Ledger(session).unfreeze(member_id)
            self.record(session, actor, "unfreeze", reason, member_id=member_id)
            return member

    def audit_log(
        self,
        *,
        member_id: int | None = None,
        action: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[OwnerAuditEntry]:
        """Audit rows, newest first, paged by ``before_id``."""
        query = select(OwnerAuditEntry).order_by(OwnerAuditEntry.id.desc()).limit(limit)
        if member_id is not None:
            query = query.where(OwnerAuditEntry.member_id == member_id)
        if action is not None:
            query = query.where(OwnerAuditEntry.action == action)
        if before_id is not None:
            query = query.where(OwnerAuditEntry.id < before_id)
        with self.sessions() as session:
            return list(session.scalars(query))
