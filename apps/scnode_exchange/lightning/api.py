"""Member routes of Lightning deposits: ``build_router(member, deposits)``.

* ``POST /v1/lightning/invoices`` ``{amount_sats, idempotency_key, description?}`` — the
  member's deposit invoice for this key (201 the first time; the same invoice again after)
* ``GET  /v1/lightning/invoices?limit=`` — the member's invoices, newest first, with state
  (``unpaid``, ``credited``, ``expired``) and the sats credited

The Lightning API down answers 503 with ``Retry-After``; a refused request 422.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from scnode_core.openapi import DB_INT_MAX
from scnode_exchange.chainclient import ChainApiError, ChainApiRetryableError
from scnode_exchange.lightning import LightningDepositError, LightningDeposits


class MemberLike(Protocol):
    """What ``current_member`` gives (``scnode_exchange.api.auth.MemberPrincipal``)."""

    @property
    def member_id(self) -> int: ...


MemberDep = Callable[..., Awaitable[MemberLike]] | Callable[..., MemberLike]


class InvoiceRequest(BaseModel):
    amount_sats: int = Field(gt=0, le=DB_INT_MAX)
    idempotency_key: str = Field(min_length=8, max_length=128)
    description: str = Field(default="", max_length=200)


def build_router(
    member: MemberDep, deposits: LightningDeposits | Callable[[], LightningDeposits | None]
) -> APIRouter:
    """The member's Lightning deposit routes, guarded by ``member``. ``deposits`` is the service,
    or a function giving it once the app has started (None: not configured on this node → 503)."""
    router = APIRouter(tags=["lightning"])
    member_dep = Depends(member)

    def configured() -> LightningDeposits:
        found = deposits if isinstance(deposits, LightningDeposits) else deposits()
        if found is None:
            raise HTTPException(503, "Lightning deposits are not configured on this node")
        return found

    service_dep = Depends(configured)

    @router.post("/v1/lightning/invoices", status_code=201)
    async def create_invoice(
        body: InvoiceRequest,
        who: MemberLike = member_dep,
        deposits: LightningDeposits = service_dep,
    ) -> Any:
        known = deposits.service.has_invoice(who.member_id, body.idempotency_key)
        try:
            invoice = await deposits.create_invoice(
                who.member_id, body.amount_sats, body.idempotency_key, body.description
            )
        except LightningDepositError as exc:
            raise HTTPException(422, str(exc)) from None
        except ChainApiRetryableError:
            raise HTTPException(
                503, "the Lightning node is unavailable", headers={"Retry-After": "10"}
            ) from None
        except ChainApiError as exc:
            raise HTTPException(422, exc.detail) from None
        return JSONResponse(invoice, status_code=200 if known else 201)

    @router.get("/v1/lightning/invoices")
    def invoices(
        who: MemberLike = member_dep,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        deposits: LightningDeposits = service_dep,
    ) -> dict[str, Any]:
        rows = deposits.service.invoices_of(who.member_id, limit=limit)
        return {
            "invoices": [
                {
                    "payment_hash": r.payment_hash,
                    "bolt11": r.bolt11,
                    "amount_sats": r.amount_sats,
                    "description": r.description,
                    "state": r.state,
                    "credited_sats": r.credited_sats,
                    "expires_at": r.expires_at.isoformat(),
                    "created_at": r.created_at.isoformat(),
                    "credited_at": r.credited_at.isoformat() if r.credited_at else None,
                }
                for r in rows
            ]
        }

    return router
