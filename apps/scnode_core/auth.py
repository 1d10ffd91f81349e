"""FastAPI dependencies that guard routes with API keys and scopes.

A client sends its key as ``Authorization: Bearer <key>`` (what upstream's master-api clients
send) or ``X-API-Key: <key>``. No or unknown key → 401 with ``WWW-Authenticate: Bearer``;
a valid key without the route's scope → 403. The reason is in ``detail``; the key never is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, HTTPException, status

from scnode_core.apikeys import ApiKeyStore, Principal

StoreProvider = Callable[[], ApiKeyStore]


def _presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


def require_scope(store: StoreProvider, scope: str) -> Callable[..., Principal]:
    """Build a dependency that admits keys holding ``scope`` and returns their principal."""

    def dependency(
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> Principal:
        token = _presented_key(authorization, x_api_key)
        if token is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="API key required (Authorization: Bearer <key>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        principal = store().authenticate(token)
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="API key not valid (unknown, revoked or expired)",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if scope not in principal.scopes:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"API key {principal.key_id} lacks the '{scope}' scope",
            )
        return principal

    return dependency


def principal_dep(store: StoreProvider, scope: str) -> object:
    """``Annotated`` alias helper: ``ReadKey = Annotated[Principal, principal_dep(...)]``."""
    return Depends(require_scope(store, scope))
