"""Owner routes (API key with the ``owner`` scope): members, balance adjustments, freezes and
the audit log. Every action writes an audit row in the same transaction."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field, StrictInt
from sqlalchemy import select

from scnode_core.openapi import DB_INT_MAX, DbId, DbIdQuery
from scnode_exchange.api.auth import OwnerDep
from scnode_exchange.api.member import balances
from scnode_exchange.api.runtime import Runtime, runtime_dep
from scnode_exchange.ledger import Member
from scnode_exchange.marketdata.queries import timestamp
from scnode_exchange.owner import OwnerAuditEntry

RuntimeDep = Annotated[Runtime, Depends(runtime_dep)]
Reason = Annotated[str, Field(min_length=3, max_length=500)]


class NewMember(BaseModel):
    handle: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@+-]+$")
    reason: Reason


class Adjustment(BaseModel):
    """Credit (amount > 0) or debit (< 0) in the asset's base units, against owner equity.
    ``idempotency_key`` makes a retried request do nothing twice."""

    asset: str = Field(min_length=2, max_length=16)
    amount: StrictInt = Field(ge=-DB_INT_MAX, le=DB_INT_MAX)
    reason: Reason
    idempotency_key: str = Field(min_length=8, max_length=128)


class ReasonOnly(BaseModel):
    reason: Reason


def member_json(member: Member) -> dict[str, Any]:
    """A member as the owner sees it."""
    return {
        "id": member.id,
        "handle": member.handle,
        "frozen": member.frozen,
        "frozen_reason": member.frozen_reason,
        "created_at": timestamp(member.created_at),
    }


def audit_json(row: OwnerAuditEntry) -> dict[str, Any]:
    """An audit row on the wire."""
    return {
        "id": row.id,
        "time": timestamp(row.created_at),
        "actor": row.actor,
        "action": row.action,
        "member_id": row.member_id,
        "reason": row.reason,
        "details": json.loads(row.details),
        "entry_id": row.entry_id,
    }


def build_router() -> APIRouter:
    """Routes under ``/api/owner``."""
    router = APIRouter(prefix="/api/owner", tags=["owner"])

    @router.get("/members")
    def members(
        _: OwnerDep,
        rt: RuntimeDep,
        before_id: DbIdQuery = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[dict[str, Any]]:
        query = select(Member).order_by(Member.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(Member.id < before_id)
        with rt.readers() as session:
            return [member_json(m) for m in session.scalars(query)]

    @router.post("/members", status_code=status.HTTP_201_CREATED)
    def create_member(body: NewMember, owner: OwnerDep, rt: RuntimeDep) -> dict[str, Any]:
        return member_json(rt.owner.create_member(owner.actor, body.handle, body.reason))

    @router.get("/members/{member_id}")
    def member(member_id: DbId, _: OwnerDep, rt: RuntimeDep) -> dict[str, Any]:
        with rt.readers() as session:
            row = session.get(Member, member_id)
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no member {member_id}")
            return {**member_json(row), "balances": balances(session, member_id)}

    @router.post("/members/{member_id}/adjustments", status_code=status.HTTP_201_CREATED)
    def adjust(
        member_id: DbId, body: Adjustment, owner: OwnerDep, rt: RuntimeDep
    ) -> dict[str, Any]:
        entry, created = rt.owner.adjust(
            owner.actor, member_id, body.asset, body.amount, body.reason, body.idempotency_key
        )
        return {"entry_id": entry.id, "created": created, "reference": entry.reference}

    @router.post("/members/{member_id}/freeze")
    def freeze(
        member_id: DbId, body: ReasonOnly, owner: OwnerDep, rt: RuntimeDep
    ) -> dict[str, Any]:
        return member_json(rt.owner.freeze(owner.actor, member_id, body.reason))

    @router.post("/members/{member_id}/unfreeze")
    def unfreeze(
        member_id: DbId, body: ReasonOnly, owner: OwnerDep, rt: RuntimeDep
    ) -> dict[str, Any]:
        return member_json(rt.owner.unfreeze(owner.actor, member_id, body.reason))

    @router.get("/audit")
    def audit(
        _: OwnerDep,
        rt: RuntimeDep,
        member_id: DbIdQuery = None,
        action: Annotated[str | None, Query(max_length=32)] = None,
        before_id: DbIdQuery = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        rows = rt.owner.audit_log(
            member_id=member_id, action=action, before_id=before_id, limit=limit
        )
        items = [audit_json(r) for r in rows]
        return {"items": items, "next_before_id": items[-1]["id"] if len(items) == limit else None}

    return router
