"""HTTP routes of deposits: ``build_router(member, owner)``.

Member (every query scoped to the caller):

* ``GET  /v1/deposits/address?chain=bitcoin`` — the member's current unused deposit address
  (the same one until it receives something; idempotent)
* ``POST /v1/deposits/address?chain=bitcoin`` — a fresh address (201)
* ``GET  /v1/deposits/addresses?chain=`` — every address handed to the member
* ``GET  /v1/deposits?chain=&state=&before=&limit=`` — history, newest first; ``next_before``
  pages on
* ``GET  /v1/deposits/pending?chain=`` — seen, not yet at N confirmations

Owner: ``GET /v1/owner/deposits/alerts?include_resolved=`` (credited deposits that left the
chain), ``POST /v1/owner/deposits/alerts/{id}/resolve`` ``{action: recredit|write_off,
reason}``, ``GET /v1/owner/deposits/suspense`` (what each asset's suspense account holds).

The service comes from ``build_router(..., service=, clients=)``, else ``app.state.
deposit_service`` / ``app.state.deposit_clients``, else it is built once from the app's
``state.sessions`` and ``state.settings.chains``. A chain API that is down answers 503 with
``Retry-After``; an unknown chain 404; a refused request 422/409.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, Field

from scnode_core.openapi import DbId, DbIdQuery
from scnode_exchange.chainclient import (
    ChainApiClient,
    ChainApiError,
    ChainApiRetryableError,
)
from scnode_exchange.deposits.models import DEPOSIT_STATES
from scnode_exchange.deposits.service import DepositError, DepositService
from scnode_exchange.deposits.settings import build_deposits


class MemberLike(Protocol):
    """What ``current_member`` gives (``scnode_exchange.api.auth.MemberPrincipal``)."""

    @property
    def member_id(self) -> int: ...


class OwnerLike(Protocol):
    """What ``current_owner`` gives (``scnode_exchange.api.auth.OwnerPrincipal``)."""

    @property
    def actor(self) -> str: ...


MemberDep = Callable[..., Awaitable[MemberLike]] | Callable[..., MemberLike]
OwnerDep = Callable[..., Awaitable[OwnerLike]] | Callable[..., OwnerLike]


class ResolveRequest(BaseModel):
    action: str = Field(pattern="^(recredit|write_off)$")
    reason: str = Field(min_length=1, max_length=500)


def build_router(
    member: MemberDep,
    owner: OwnerDep,
    *,
    service: DepositService | None = None,
    clients: Mapping[str, ChainApiClient] | None = None,
) -> APIRouter:
    """Member and owner deposit routes, guarded by the given dependencies."""
    router = APIRouter(tags=["deposits"])
    member_dep = Depends(member)
    owner_dep = Depends(owner)

    def deposits_of(request: Request) -> DepositService:
        if service is not None:
            return service
        state = request.app.state
        found = getattr(state, "deposit_service", None)
        if found is None:
            found, built = _from_app(state)
            state.deposit_service = found
            state.deposit_clients = built
        return found

    def client_of(request: Request, chain: str) -> ChainApiClient:
        deposits_of(request)
        known = clients if clients is not None else request.app.state.deposit_clients
        if chain not in known:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no deposits on chain {chain!r}")
        return known[chain]

    service_dep = Depends(deposits_of)

    async def address(request: Request, who: MemberLike, chain: str, fresh: bool) -> Any:
        deposits = deposits_of(request)
        if chain not in deposits.chains:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no deposits on chain {chain!r}")
        try:
            got = await client_of(request, chain).new_address(who.member_id, fresh=fresh)
        except ChainApiRetryableError as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"{chain} node is not reachable right now, try again shortly",
                headers={"Retry-After": "10"},
            ) from exc
        except ChainApiError as exc:
            raise HTTPException(
                status.HTTP_502_BAD_GATEWAY, f"{chain} node refused: {exc}"
            ) from exc
        deposits.record_address(who.member_id, chain, got.address)
        return {
            "chain": chain,
            "asset": deposits.chains[chain].asset,
            "address": got.address,
            "new": got.new,
            "required_confirmations": deposits.chains[chain].confirmations,
        }

    @router.get("/v1/deposits/address")
    async def current_address(request: Request, chain: str, who: MemberLike = member_dep) -> Any:
        return await address(request, who, chain, fresh=False)

    @router.post("/v1/deposits/address", status_code=status.HTTP_201_CREATED)
    async def fresh_address(request: Request, chain: str, who: MemberLike = member_dep) -> Any:
        return await address(request, who, chain, fresh=True)

    @router.get("/v1/deposits/addresses")
    def addresses(
        who: MemberLike = member_dep,
        deposits: DepositService = service_dep,
        chain: str | None = None,
    ) -> Any:
        return {
            "addresses": [
                {"chain": c, "address": a} for c, a in deposits.addresses(who.member_id, chain)
            ]
        }

    @router.get("/v1/deposits")
    def history(
        who: MemberLike = member_dep,
        deposits: DepositService = service_dep,
        chain: str | None = None,
        state: Annotated[list[str] | None, Query()] = None,
        before: DbIdQuery = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> Any:
        unknown = set(state or ()) - set(DEPOSIT_STATES)
        if unknown:
            raise HTTPException(422, f"unknown states {sorted(unknown)}")
        rows = deposits.history(
            who.member_id, chain=chain, states=state, before_id=before, limit=limit
        )
        return {
            "deposits": [d.to_json() for d in rows],
            "next_before": rows[-1].id if len(rows) == limit else None,
        }

    @router.get("/v1/deposits/pending")
    def pending(
        who: MemberLike = member_dep,
        deposits: DepositService = service_dep,
        chain: str | None = None,
    ) -> Any:
        return {"deposits": [d.to_json() for d in deposits.pending(who.member_id, chain)]}

    @router.get("/v1/owner/deposits/alerts")
    def alerts(
        _: OwnerLike = owner_dep,
        deposits: DepositService = service_dep,
        include_resolved: bool = False,
    ) -> Any:
        return {"alerts": [a.to_json() for a in deposits.alerts(include_resolved=include_resolved)]}

    @router.post("/v1/owner/deposits/alerts/{alert_id}/resolve")
    def resolve(
        alert_id: DbId,
        body: ResolveRequest,
        who: OwnerLike = owner_dep,
        deposits: DepositService = service_dep,
    ) -> Any:
        try:
            resolved = deposits.resolve_alert(
                alert_id, action=body.action, actor=who.actor, reason=body.reason
            )
        except DepositError as exc:
            code = 404 if "no deposit alert" in str(exc) else 409
            raise HTTPException(code, str(exc)) from exc
        return resolved.to_json()

    @router.get("/v1/owner/deposits/suspense")
    def suspense(_: OwnerLike = owner_dep, deposits: DepositService = service_dep) -> Any:
        assets = sorted({c.asset for c in deposits.chains.values()})
        return {
            "suspense": {a: deposits.suspense_total(a) for a in assets},
            "open_alerts": len(deposits.alerts()),
        }

    return router


def _from_app(state: Any) -> tuple[DepositService, dict[str, ChainApiClient]]:
    service, _, built = build_deposits(state.sessions, state.settings.chains)
    return service, built
