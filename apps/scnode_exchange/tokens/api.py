"""Members' API tokens: ``/api/tokens`` and the authenticator that accepts them.

A token is ``scmt1.<id>.<secret>`` (256-bit secret); the table keeps only the secret's SHA-256
(a random secret needs no slow hash), compared in constant time. It names its member and its
**scopes** — ``read`` (look at balances, orders, history, market data), ``trade`` (place and
cancel orders), ``withdraw`` (every other change: withdrawals, Lightning, deposit addresses,
workers) — checked on every request by ``scnode_exchange.api.auth.required_scope``. A revoked
or expired token is refused at once (the row is read on each request: one primary-key lookup).

Routes (a full member session only: an API token can neither make nor list nor revoke tokens,
so a leaked token cannot mint more):

* ``GET    /api/tokens`` — the member's tokens, newest first (no secrets)
* ``POST   /api/tokens`` ``{name, scopes, expires_in_days?}`` — 201 with ``token``, shown once
* ``DELETE /api/tokens/{id}`` — revoke (204); another member's id answers 404 like a missing one
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from starlette.datastructures import State

from scnode_core.openapi import DbId
from scnode_exchange.api.auth import MemberAuthenticator, MemberDep, MemberPrincipal
from scnode_exchange.api.runtime import Runtime, runtime_dep
from scnode_exchange.marketdata.queries import timestamp
from scnode_exchange.tokens.models import MemberApiToken

log = logging.getLogger(__name__)
PREFIX = "scmt1"
SCOPES = ("read", "trade", "withdraw")
MAX_ACTIVE = 20  # live tokens per member
RuntimeDep = Annotated[Runtime, Depends(runtime_dep)]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class MemberApiTokens:
    """``MemberAuthenticator`` for ``scmt1.`` tokens; any other token goes to ``fallback``
    (the session tokens). Reads the table through the app's runtime once it has started."""

    def __init__(self, state: State, fallback: MemberAuthenticator) -> None:
        self._state = state
        self._fallback = fallback

    def verify(self, token: str) -> MemberPrincipal | None:
        """The member and scopes of a live token, else None."""
        if not token.startswith(PREFIX + "."):
            return self._fallback.verify(token)
        parts = token.split(".")
        rt: Runtime | None = getattr(self._state, "runtime", None)
        if len(parts) != 3 or not parts[1].isdigit() or rt is None:
            return None
        with rt.readers() as session:
            row = session.get(MemberApiToken, int(parts[1]))
            if row is None or row.revoked_at is not None:
                return None
            if not hmac.compare_digest(row.secret_sha256, _digest(parts[2])):
                return None
            expires = timestamp(row.expires_at) if row.expires_at is not None else 0.0
            if expires and expires <= datetime.now(UTC).timestamp():
                return None
            return MemberPrincipal(row.member_id, int(expires), frozenset(row.scopes.split()))


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
    scopes: list[str] = Field(min_length=1, max_length=len(SCOPES))
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


def _json(row: MemberApiToken) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "scopes": row.scopes.split(),
        "created_at": int(timestamp(row.created_at)),
        "expires_at": int(timestamp(row.expires_at)) if row.expires_at else None,
        "revoked_at": int(timestamp(row.revoked_at)) if row.revoked_at else None,
    }


def _session_only(who: MemberPrincipal) -> None:
    # required_scope already refuses API tokens here; this keeps the rule if routes move
    if who.scopes is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "API tokens cannot manage API tokens")


def build_router() -> APIRouter:
    """``/api/tokens``: list, create, revoke the caller's API tokens."""
    router = APIRouter(prefix="/api/tokens", tags=["tokens"])

    @router.get("")
    async def list_tokens(who: MemberDep, rt: RuntimeDep) -> dict[str, Any]:
        _session_only(who)

        def read() -> list[dict[str, Any]]:
            with rt.readers() as session:
                rows = session.scalars(
                    select(MemberApiToken)
                    .where(MemberApiToken.member_id == who.member_id)
                    .order_by(MemberApiToken.id.desc())
                    .limit(200)
                )
                return [_json(r) for r in rows]

        return {"tokens": await rt.run(read), "scopes": list(SCOPES)}

    @router.post("", status_code=status.HTTP_201_CREATED)
    async def create(body: NewToken, who: MemberDep, rt: RuntimeDep) -> dict[str, Any]:
        _session_only(who)
        unknown = set(body.scopes) - set(SCOPES)
        if unknown:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"unknown scopes {sorted(unknown)}; known: {', '.join(SCOPES)}",
            )
        secret = secrets.token_urlsafe(32)

        def write() -> dict[str, Any]:
            with rt.sessions.begin() as session:
                live = session.scalar(
                    select(func.count())
                    .select_from(MemberApiToken)
                    .where(
                        MemberApiToken.member_id == who.member_id,
                        MemberApiToken.revoked_at.is_(None),
                    )
                )
                if (live or 0) >= MAX_ACTIVE:
                    raise HTTPException(
                        status.HTTP_409_CONFLICT,
                        f"at most {MAX_ACTIVE} live tokens: revoke one first",
                    )
                now = datetime.now(UTC)
                row = MemberApiToken(
                    member_id=who.member_id,
                    name=body.name.strip() or "token",
                    scopes=" ".join(sorted(set(body.scopes))),
                    secret_sha256=_digest(secret),
                    created_at=now,
                    expires_at=now + timedelta(days=body.expires_in_days)
                    if body.expires_in_days
                    else None,
                )
                session.add(row)
                session.flush()
                return {**_json(row), "token": f"{PREFIX}.{row.id}.{secret}"}

        made = await rt.run(write)
        log.info("member %d made API token %d (%s)", who.member_id, made["id"], made["scopes"])
        return made

    @router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def revoke(token_id: DbId, who: MemberDep, rt: RuntimeDep) -> None:
        _session_only(who)

        def write() -> bool:
            with rt.sessions.begin() as session:
                row = session.get(MemberApiToken, token_id)
                if row is None or row.member_id != who.member_id:
                    return False
                if row.revoked_at is None:
                    row.revoked_at = datetime.now(UTC)
                return True

        if not await rt.run(write):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such token")
        log.info("member %d revoked API token %d", who.member_id, token_id)

    return router
