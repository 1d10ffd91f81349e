"""Owner route of the solvency check: ``GET /api/owner/solvency``.

Answers fresh figures per asset (the wallets are read now; the alert state is the periodic
check's and is not changed by looking), the open alerts, and with ``history=true`` the
latest cleared ones too. Needs the owner's API key (``current_owner``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from scnode_exchange.solvency.checker import SolvencyChecker


class OwnerLike(Protocol):
    @property
    def actor(self) -> str: ...


OwnerDep = Callable[..., Awaitable[OwnerLike]] | Callable[..., OwnerLike]


def build_router(_member: Any, owner: OwnerDep) -> APIRouter:
    """The route, with the app's owner dependency (the member one is not used)."""
    router = APIRouter(prefix="/api/owner", tags=["owner"])
    owner_dep = Depends(owner)

    @router.get("/solvency")
    async def solvency(
        request: Request,
        _: OwnerLike = owner_dep,
        history: Annotated[bool, Query()] = False,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        checker: SolvencyChecker | None = getattr(request.app.state, "solvency", None)
        if checker is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "starting up")
        report = await checker.report()
        alerts = await asyncio.to_thread(
            checker.service.alerts, include_cleared=history, limit=limit
        )
        return {
            **report.to_json(),
            "interval_seconds": checker.interval,
            "confirm_checks": checker.service.confirm_checks,
            "open_alerts": [a.to_json() for a in alerts if a.cleared_at is None],
            "alerts": [a.to_json() for a in alerts],
        }

    return router
