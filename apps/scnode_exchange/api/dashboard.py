"""The member dashboard as a trusted client of the exchange: ``POST /api/dashboard/sessions``.

The dashboard signs members in (BTCofAZ OpenID Connect or a local account, plus TOTP) and then
acts for them with ordinary member session tokens, which it asks for here with its own API key
(scope ``dashboard``, in the owner keys file; the apps role issues it). The token stays on the
dashboard's server side, never reaches the browser, and names only the member: every member
route keeps scoping by ``current_member`` exactly as for any other client.

The key is powerful (it can act for any member), so it has its own scope: an ``owner`` key does
not do it, and a ``dashboard`` key opens no owner route. Each issue is logged with the key id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.requests import HTTPConnection

from scnode_core.apikeys import ApiKeyStore, Principal
from scnode_exchange.api.auth import SessionTokens, bearer_token
from scnode_exchange.api.runtime import Runtime
from scnode_exchange.ledger import Member

log = logging.getLogger(__name__)
DASHBOARD_SCOPE = "dashboard"


class SessionRequest(BaseModel):
    """Which member the dashboard signed in (the member's handle = BTCofAZ username)."""

    handle: str = Field(min_length=1, max_length=128)


def dashboard_client(conn: HTTPConnection) -> Principal:
    """Dependency: the dashboard, from an API key with the ``dashboard`` scope."""
    keys: Callable[[], ApiKeyStore] = conn.app.state.owner_keys
    token = conn.headers.get("x-api-key") or bearer_token(conn)
    principal = keys().authenticate(token) if token else None
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "dashboard API key required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if DASHBOARD_SCOPE not in principal.scopes:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs the '{DASHBOARD_SCOPE}' scope")
    return principal


DashboardDep = Annotated[Principal, Depends(dashboard_client)]


def build_router() -> APIRouter:
    """``POST /api/dashboard/sessions``: a member session token for the dashboard."""
    router = APIRouter(prefix="/api/dashboard", tags=["dashboard"])

    @router.post("/sessions", status_code=status.HTTP_201_CREATED)
    def issue(body: SessionRequest, client: DashboardDep, request: Request) -> dict[str, Any]:
        rt: Runtime = request.app.state.runtime
        with rt.readers() as session:
            member = session.scalar(select(Member).where(Member.handle == body.handle))
            if member is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no member with this handle")
            member_id, frozen = member.id, member.frozen
        tokens: SessionTokens = request.app.state.session_tokens
        token = tokens.issue(member_id)
        principal = tokens.verify(token)
        assert principal is not None
        log.info("dashboard key %s: session for member %d", client.key_id, member_id)
        return {
            "token": token,
            "member_id": member_id,
            "frozen": frozen,
            "expires_at": principal.expires_at,
        }

    return router
