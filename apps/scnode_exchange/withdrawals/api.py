"""HTTP routes of withdrawals: ``build_router(member, owner)``.

Member (every query scoped to the caller; another member's withdrawal is a 404 like a missing
one):

* ``GET  /v1/withdrawals/policy`` — per chain: asset, fee, minimum, limits, approval threshold
* ``POST /v1/withdrawals`` — ``{chain, address, amount, idempotency_key}`` (or the key in an
  ``Idempotency-Key`` header); 201 created, 200 when the key repeats the same request
* ``GET  /v1/withdrawals?limit=&before=`` — newest first; ``next_before`` pages on
* ``GET  /v1/withdrawals/{id}`` — with its state history
* ``POST /v1/withdrawals/{id}/cancel`` — while not yet being sent (hold released)

Owner: ``GET /v1/owner/withdrawals?state=&member_id=&limit=&before=``,
``GET /v1/owner/withdrawals/{id}``, ``POST /v1/owner/withdrawals/{id}/approve``,
``POST /v1/owner/withdrawals/{id}/reject`` ``{reason}``.

Refusals answer ``{"detail": reason, "code": code}`` with 404/409/422. The service is taken
from ``app.state.withdrawal_service`` unless one is given; ``app.state.withdrawal_worker`` (if
set) is woken after a request or an approval so it sends at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from scnode_core.openapi import DB_INT_MAX, DbId, DbIdQuery
from scnode_exchange.refusals import RefusalError, refusal_response
from scnode_exchange.refusals import idempotency_key as key_of
from scnode_exchange.withdrawals.models import STATES
from scnode_exchange.withdrawals.service import (
    WithdrawalError,
    WithdrawalInfo,
    WithdrawalService,
)


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


Limit = Annotated[int, Query(ge=1, le=500)]
# ids and cursors a database integer can hold (a larger one is bad input, not a server error)
WithdrawalId = DbId
Before = Annotated[int | None, Query(ge=1, le=DB_INT_MAX)]


class WithdrawalRequest(BaseModel):
    chain: str = Field(min_length=1, max_length=32)
    address: str = Field(min_length=1, max_length=128)
    amount: int = Field(
        gt=0, le=DB_INT_MAX, description="base units of the chain's asset (sats, azsats)"
    )
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)


class Rejection(BaseModel):
    reason: str = Field(min_length=1, max_length=1000)


def _page(rows: list[WithdrawalInfo], limit: int) -> dict[str, Any]:
    return {
        "withdrawals": [r.to_json() for r in rows],
        "next_before": rows[-1].id if len(rows) == limit else None,
    }


def build_router(
    member: MemberDep,
    owner: OwnerDep,
    service: WithdrawalService | None = None,
) -> APIRouter:
    """The member and owner withdrawal routes (mounted by the exchange app)."""
    router = APIRouter(tags=["withdrawals"])

    def _service(request: Request) -> WithdrawalService:
        if service is not None:
            return service
        found: WithdrawalService = request.app.state.withdrawal_service
        return found

    def _wake(request: Request) -> None:
        worker = getattr(request.app.state, "withdrawal_worker", None)
        if worker is not None:
            worker.wake()

    the_service = Depends(_service)
    a_member = Depends(member)
    the_owner = Depends(owner)

    # -- member --------------------------------------------------------------------------
    @router.get("/v1/withdrawals/policy")
    def policy(svc: WithdrawalService = the_service, _: MemberLike = a_member) -> dict[str, Any]:
        return {
            "chains": {
                chain: {
                    "asset": p.asset,
                    "fee": p.fee,
                    "min_amount": p.min_amount,
                    "max_amount": p.max_amount,
                    "daily_limit": p.daily_limit,
                    "approval_threshold": p.approval_threshold,
                    "confirmations": p.confirmations,
                }
                for chain, p in sorted(svc.policies.items())
            }
        }

    @router.post("/v1/withdrawals", status_code=201)
    def create(
        body: WithdrawalRequest,
        request: Request,
        svc: WithdrawalService = the_service,
        who: MemberLike = a_member,
        idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
    ) -> JSONResponse:
        try:
            key = key_of(body.idempotency_key, idempotency_key)
            info = svc.request_withdrawal(who.member_id, body.chain, body.address, body.amount, key)
        except RefusalError as exc:
            return refusal_response(exc)
        if not info.replayed:
            _wake(request)
        return JSONResponse(
            {**info.to_json(), "replayed": info.replayed},
            status_code=200 if info.replayed else 201,
        )

    @router.get("/v1/withdrawals")
    def mine(
        svc: WithdrawalService = the_service,
        who: MemberLike = a_member,
        limit: Limit = 50,
        before: Before = None,
    ) -> dict[str, Any]:
        rows = svc.list_withdrawals(member_id=who.member_id, before_id=before, limit=limit)
        return _page(rows, limit)

    @router.get("/v1/withdrawals/{withdrawal_id}", response_model=None)
    def one(
        withdrawal_id: WithdrawalId,
        svc: WithdrawalService = the_service,
        who: MemberLike = a_member,
    ) -> JSONResponse | dict[str, Any]:
        try:
            info = svc.get(withdrawal_id, member_id=who.member_id)
        except WithdrawalError as exc:
            return refusal_response(exc)
        return {**info.to_json(), "events": [e.to_json() for e in svc.events(info.id)]}

    @router.post("/v1/withdrawals/{withdrawal_id}/cancel", response_model=None)
    def cancel(
        withdrawal_id: WithdrawalId,
        svc: WithdrawalService = the_service,
        who: MemberLike = a_member,
    ) -> JSONResponse | dict[str, Any]:
        try:
            return svc.cancel(who.member_id, withdrawal_id).to_json()
        except WithdrawalError as exc:
            return refusal_response(exc)

    # -- owner ---------------------------------------------------------------------------
    @router.get("/v1/owner/withdrawals", response_model=None)
    def all_withdrawals(
        svc: WithdrawalService = the_service,
        _: OwnerLike = the_owner,
        state: str | None = None,
        member_id: DbIdQuery = None,
        limit: Limit = 50,
        before: Before = None,
    ) -> JSONResponse | dict[str, Any]:
        states = tuple(s for s in (state or "").split(",") if s) or None
        if states and not set(states) <= set(STATES):
            return JSONResponse(
                {"detail": f"state must be among {', '.join(STATES)}", "code": "bad_request"},
                status_code=422,
            )
        rows = svc.list_withdrawals(
            member_id=member_id, states=states, before_id=before, limit=limit
        )
        return _page(rows, limit)

    @router.get("/v1/owner/withdrawals/{withdrawal_id}", response_model=None)
    def owner_one(
        withdrawal_id: WithdrawalId, svc: WithdrawalService = the_service, _: OwnerLike = the_owner
    ) -> JSONResponse | dict[str, Any]:
        try:
            info = svc.get(withdrawal_id)
        except WithdrawalError as exc:
            return refusal_response(exc)
        return {**info.to_json(), "events": [e.to_json() for e in svc.events(info.id)]}

    @router.post("/v1/owner/withdrawals/{withdrawal_id}/approve", response_model=None)
    def approve(
        withdrawal_id: WithdrawalId,
        request: Request,
        svc: WithdrawalService = the_service,
        who: OwnerLike = the_owner,
    ) -> JSONResponse | dict[str, Any]:
        try:
            info = svc.approve(withdrawal_id, who.actor)
        except WithdrawalError as exc:
            return refusal_response(exc)
        _wake(request)
        return info.to_json()

    @router.post("/v1/owner/withdrawals/{withdrawal_id}/reject", response_model=None)
    def reject(
        withdrawal_id: WithdrawalId,
        body: Rejection,
        svc: WithdrawalService = the_service,
        who: OwnerLike = the_owner,
    ) -> JSONResponse | dict[str, Any]:
        try:
            return svc.reject(withdrawal_id, who.actor, body.reason).to_json()
        except WithdrawalError as exc:
            return refusal_response(exc)

    return router
