"""Member routes of Lightning payments: ``build_router(member, payments, sessions)``.

* ``GET  /v1/lightning/payments/policy`` — limits, fee policy and what the member used in
  the last 24 hours
* ``POST /v1/lightning/payments/quote`` ``{bolt11}`` — what paying it would reserve (nothing
  is reserved)
* ``POST /v1/lightning/payments`` ``{bolt11, idempotency_key}`` (or the key as an
  ``Idempotency-Key`` header) — 201 a new payment (``reserved``; ``complete`` at once when it is
  another member's invoice of this node), 200 when the key repeats the same request
* ``GET  /v1/lightning/payments?limit=&before=`` — newest first; ``next_before`` pages on
* ``GET  /v1/lightning/payments/{id}`` — one payment (another member's is a 404)

Refusals answer ``{"detail": reason, "code": code}`` with 404/409/422; the Lightning API
unreachable (needed to learn the node's network once) 503 with ``Retry-After``; Lightning not
configured on this node 503. Reads work from the database alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker

from scnode_core.openapi import DB_INT_MAX
from scnode_exchange.lightning.api import MemberDep, MemberLike
from scnode_exchange.lightning.payments import (
    LightningPaymentError,
    LightningPaymentService,
    PaymentInfo,
)
from scnode_exchange.lightning.payworker import LightningPayments, LightningUnavailableError
from scnode_exchange.refusals import RefusalError, refusal_response
from scnode_exchange.refusals import idempotency_key as key_of

Limit = Annotated[int, Query(ge=1, le=500)]
PaymentId = Annotated[int, Path(ge=1, le=DB_INT_MAX)]
Before = Annotated[int | None, Query(ge=1, le=DB_INT_MAX)]


class PaymentRequest(BaseModel):
    bolt11: str = Field(min_length=1, max_length=4096, description="the BOLT11 invoice")
    idempotency_key: str | None = Field(default=None, min_length=8, max_length=128)


class QuoteRequest(BaseModel):
    bolt11: str = Field(min_length=1, max_length=4096)


def _unavailable(exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": f"the Lightning node is unavailable: {exc}", "code": "unavailable"},
        status_code=503,
        headers={"Retry-After": "10"},
    )


def build_router(
    member: MemberDep,
    payments: Callable[[], LightningPayments | None],
    sessions: Callable[[Request], sessionmaker[Session]],
) -> APIRouter:
    """The member's payment routes. ``payments`` gives the service once the app started (None:
    Lightning not configured → 503 for new payments); ``sessions`` the database for reads."""
    router = APIRouter(tags=["lightning"])
    a_member = Depends(member)

    def configured() -> LightningPayments:
        found = payments()
        if found is None:
            raise HTTPException(503, "Lightning payments are not configured on this node")
        return found

    def reader(request: Request) -> LightningPaymentService:
        found = payments()
        return found.service if found is not None else LightningPaymentService(sessions(request))

    the_payments = Depends(configured)
    the_reader = Depends(reader)

    @router.get("/v1/lightning/payments/policy")
    def policy(who: MemberLike = a_member, svc: LightningPayments = the_payments) -> dict[str, Any]:
        used = svc.service.used_today(who.member_id)
        return {**svc.service.policy.to_json(), "daily_used_sats": used}

    @router.post("/v1/lightning/payments/quote", response_model=None)
    async def quote(
        body: QuoteRequest, who: MemberLike = a_member, svc: LightningPayments = the_payments
    ) -> JSONResponse | dict[str, Any]:
        try:
            return await svc.quote(who.member_id, body.bolt11)
        except LightningPaymentError as exc:
            return refusal_response(exc)
        except LightningUnavailableError as exc:
            return _unavailable(exc)

    @router.post("/v1/lightning/payments", status_code=201)
    async def create(
        body: PaymentRequest,
        who: MemberLike = a_member,
        svc: LightningPayments = the_payments,
        idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
    ) -> JSONResponse:
        try:
            key = key_of(body.idempotency_key, idempotency_key)
            info = await svc.pay(who.member_id, body.bolt11, key)
        except RefusalError as exc:
            return refusal_response(exc)
        except LightningUnavailableError as exc:
            return _unavailable(exc)
        return JSONResponse(
            {**info.to_json(), "replayed": info.replayed},
            status_code=200 if info.replayed else 201,
        )

    def _page(rows: list[PaymentInfo], limit: int) -> dict[str, Any]:
        return {
            "payments": [r.to_json() for r in rows],
            "next_before": rows[-1].id if len(rows) == limit else None,
        }

    @router.get("/v1/lightning/payments")
    def mine(
        who: MemberLike = a_member,
        svc: LightningPaymentService = the_reader,
        limit: Limit = 50,
        before: Before = None,
    ) -> dict[str, Any]:
        return _page(
            svc.list_payments(member_id=who.member_id, before_id=before, limit=limit), limit
        )

    @router.get("/v1/lightning/payments/{payment_id}", response_model=None)
    def one(
        payment_id: PaymentId,
        who: MemberLike = a_member,
        svc: LightningPaymentService = the_reader,
    ) -> JSONResponse | dict[str, Any]:
        try:
            return svc.get(payment_id, member_id=who.member_id).to_json()
        except LightningPaymentError as exc:
            return refusal_response(exc)

    return router
