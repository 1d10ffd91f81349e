"""Who is calling: members (signed session tokens) and the owner (API keys).

Routers depend on ``current_member`` (→ ``MemberPrincipal`` with ``member_id``) and
``current_owner`` (→ ``OwnerPrincipal`` with ``actor``). Both read what they need from
``app.state`` (set by ``create_app`` or a test), so a router never knows how login works:

* ``app.state.member_authenticator`` — a ``MemberAuthenticator``; the default,
  ``SessionTokens``, checks an HMAC-SHA256 signed ``member id + expiry`` token. The dashboards
  issue replaces *login* (OIDC + TOTP) and keeps issuing these tokens, or swaps the
  authenticator; the dependency stays.
* ``app.state.owner_keys`` — a callable returning the ``scnode_core.apikeys.ApiKeyStore`` of
  the owner's keys; a key needs the ``owner`` scope.

A member token is sent as ``Authorization: Bearer <token>`` or in the ``scnode_session``
cookie. A cookie-authenticated request that changes something (POST, PUT, PATCH, DELETE) must
also carry ``X-Requested-With`` (a cross-site form cannot set it without a CORS preflight, which
this app never grants), so a cookie alone never moves money. No or bad credentials → 401;
a member token on an owner route → 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, HTTPException, status
from starlette.requests import HTTPConnection

from scnode_core.apikeys import ApiKeyStore

SESSION_COOKIE = "scnode_session"
TOKEN_PREFIX = "scms1"  # noqa: S105  (a format marker, not a secret)
OWNER_SCOPE = "owner"
# the owner dashboard's signed-in owner, recorded in the audit actor (``owner:<key> by <user>``)
ACTING_OWNER_HEADER = "x-acting-owner"
ACTING_OWNER_RE = re.compile(r"[A-Za-z0-9_.@+-]{1,48}")
_UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True, slots=True)
class MemberPrincipal:
    """An authenticated member; every member query is scoped to ``member_id``."""

    member_id: int
    expires_at: int = 0
    # None: a full session (signed token); otherwise a member API token's scopes
    # (``scnode_exchange.tokens``), checked against every request by ``required_scope``
    scopes: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class OwnerPrincipal:
    """The node's owner (or an owner tool) authenticated by an API key; ``actor`` names the
    key in the audit log (``owner:<key id>[:<key name>]``)."""

    actor: str


class MemberAuthenticator(Protocol):
    """Turns a presented member token into a principal, or None when it is not valid."""

    def verify(self, token: str) -> MemberPrincipal | None:
        """The member the token names, or None (bad signature, expired, malformed)."""
        ...


class SessionTokens:
    """Stateless member session tokens: ``scms1.<member id>.<expiry>.<hmac>``.

    The HMAC-SHA256 key is the node's session secret; changing it ends every session. Tokens
    carry no balance or role, only who and until when.
    """

    def __init__(self, secret: bytes, ttl_seconds: int = 12 * 3600) -> None:
        if len(secret) < 32:
            raise ValueError("session secret must be at least 32 bytes")
        self._secret = secret
        self.ttl_seconds = ttl_seconds

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._secret, payload.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def issue(self, member_id: int, now: float | None = None) -> str:
        """A token for ``member_id`` valid for ``ttl_seconds`` from ``now``."""
        if type(member_id) is not int or member_id <= 0:
            raise ValueError("member_id must be a positive integer")
        expires = int(now if now is not None else time.time()) + self.ttl_seconds
        payload = f"{TOKEN_PREFIX}.{member_id}.{expires}"
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str, now: float | None = None) -> MemberPrincipal | None:
        """The member of a well-signed, unexpired token, else None."""
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != TOKEN_PREFIX:
            return None
        payload = ".".join(parts[:3])
        if not hmac.compare_digest(self._sign(payload), parts[3]):
            return None
        if not (parts[1].isdigit() and parts[2].isdigit()):
            return None
        member_id, expires = int(parts[1]), int(parts[2])
        if expires <= (now if now is not None else time.time()) or member_id <= 0:
            return None
        return MemberPrincipal(member_id, expires)


def _bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


def bearer_token(conn: HTTPConnection) -> str | None:
    """The ``Authorization: Bearer`` token of a request or WebSocket handshake, if any."""
    return _bearer(conn)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def current_member(conn: HTTPConnection) -> MemberPrincipal:
    """Dependency: the calling member, from a bearer token or the session cookie (async: no
    thread-pool hop per request; the check is a few microseconds of HMAC)."""
    return member_from(conn)


def member_from(conn: HTTPConnection) -> MemberPrincipal:
    """The calling member, from a bearer token or the session cookie, else ``HTTPException``
    (401, or 403 for a cookie-only change without ``X-Requested-With``)."""
    authenticator: MemberAuthenticator = conn.app.state.member_authenticator
    token = _bearer(conn)
    from_cookie = False
    if token is None:
        token = conn.cookies.get(SESSION_COOKIE)
        from_cookie = token is not None
    if not token:
        raise _unauthorized("member session required (Authorization: Bearer <token>)")
    principal = authenticator.verify(token)
    if principal is None:
        raise _unauthorized("member session not valid (expired or not signed by this node)")
    method = conn.scope.get("method", "GET")
    if from_cookie and method in _UNSAFE_METHODS and "x-requested-with" not in conn.headers:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="cookie sessions need the X-Requested-With header to change anything",
        )
    if principal.scopes is not None:
        needed = required_scope(conn)
        if needed is None or needed not in principal.scopes:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"this API token lacks the scope {needed!r}"
                if needed
                else "API tokens cannot manage API tokens",
            )
    return principal


def required_scope(conn: HTTPConnection) -> str | None:
    """The member API token scope a request needs: ``read`` to look (GET, market/order
    streams), ``trade`` to place or cancel orders (``/api/orders``, ``/ws/trade``),
    ``withdraw`` for every other change (withdrawals, Lightning, deposit addresses, workers).
    None: no API token may do it (managing API tokens needs a full session)."""
    path = conn.url.path
    if path.startswith("/api/tokens"):
        return None
    if conn.scope["type"] == "websocket":
        return "trade" if path == "/ws/trade" else "read"
    if conn.scope.get("method", "GET") in ("GET", "HEAD"):
        return "read"
    if path.startswith("/api/orders"):
        return "trade"
    return "withdraw"


def current_owner(conn: HTTPConnection) -> OwnerPrincipal:
    """Dependency: the owner, from an API key with the ``owner`` scope
    (``Authorization: Bearer <key>`` or ``X-API-Key``). A front end acting for a signed-in
    owner (the owner dashboard) names that person in ``X-Acting-Owner``; the audit actor is
    then ``owner:<key id>[:<key name>] by <person>``."""
    keys: Callable[[], ApiKeyStore] = conn.app.state.owner_keys
    token = conn.headers.get("x-api-key") or _bearer(conn)
    if not token:
        raise _unauthorized("owner API key required (Authorization: Bearer <key>)")
    principal = keys().authenticate(token)
    if principal is None:
        authenticator: MemberAuthenticator = conn.app.state.member_authenticator
        if authenticator.verify(token) is not None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="owner route: members refused")
        raise _unauthorized("owner API key not valid (unknown, revoked or expired)")
    if OWNER_SCOPE not in principal.scopes:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"API key {principal.key_id} lacks the '{OWNER_SCOPE}' scope",
        )
    actor = f"owner:{principal.key_id}" + (f":{principal.name}" if principal.name else "")
    acting = conn.headers.get(ACTING_OWNER_HEADER)
    if acting is not None:
        # a trusted front end (the owner dashboard) names the person who signed in to it
        if not ACTING_OWNER_RE.fullmatch(acting):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=f"{ACTING_OWNER_HEADER}: 1-48 characters of letters, digits and _.@+-",
            )
        actor = f"{actor[:72]} by {acting}"
    return OwnerPrincipal(actor)


MemberDep = Annotated[MemberPrincipal, Depends(current_member)]
OwnerDep = Annotated[OwnerPrincipal, Depends(current_owner)]
