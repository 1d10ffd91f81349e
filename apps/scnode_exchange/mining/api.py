"""HTTP routes of mining: ``build_router(member, owner)``.

Member (every query scoped to the caller):

* ``GET    /v1/mining/workers?pool=`` — the member's registered workers
* ``POST   /v1/mining/workers`` ``{pool, name}`` — register a worker name (201; 200 if it is
  already the member's; 409 if another member has it)
* ``DELETE /v1/mining/workers/{pool}/{name}`` — remove one of the member's workers (204)
* ``GET    /v1/mining/payouts?pool=&limit=`` — payouts the member has a part in, each with
  only the member's own part (amount, work, share of the payout's work)

Owner:

* ``GET    /v1/owner/mining/workers?pool=`` — every registration
* ``PUT    /v1/owner/mining/workers/{pool}/{name}`` ``{member_id, reason}`` — assign/reassign
* ``DELETE /v1/owner/mining/workers/{pool}/{name}?reason=`` — remove
* ``GET    /v1/owner/mining/unknown-workers?pool=`` — work that went to suspense, by worker
* ``GET    /v1/owner/mining/payouts?pool=&limit=`` — payouts with every part and unknown worker
* ``POST   /v1/owner/mining/payouts`` ``{pool, payout_id, amount, confirmations, coinbase,
  window_start, window_end, work?}`` — split a mature payout (201 new, 200 already split;
  422 immature, invalid or a window overlapping an earlier payout's; 409 same id with another
  amount). Without ``window_start`` the window starts where the pool's previous payout's
  ended (PPLNS since the previous payout). Without ``work`` the work comes from the stats API
  client (``work_source=``, else ``app.state.mining_work_source``: the configured pools' stats
  APIs, set by ``start_mining``) for ``[window_start, window_end)``; 422 "give work" when none
  is configured, 503 when it is down.

The service comes from ``build_router(..., service=)``, else ``app.state.mining_service``, else
it is built once from ``app.state.sessions`` with the per-pool fee and confirmations of
``app.state.settings.mining_pools`` if the app's settings carry it, else of
``SCNODE_EXCHANGE_MINING_POOLS`` (``settings.py``) — the same values the watcher uses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, Field

from scnode_core.openapi import DB_INT_MAX
from scnode_exchange.mining.service import (
    ImmaturePayoutError,
    MiningError,
    MiningService,
    PayoutConflictError,
    PoolPayout,
    UnknownWorkerError,
    WorkerTakenError,
)
from scnode_exchange.mining.settings import mining_config, mining_settings


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
WorkSource = Callable[[str, int, int], Awaitable[Mapping[str, float]]]

POOL = "^(btc|azc)$"
PoolQuery = Annotated[str | None, Query(pattern=POOL)]
Limit = Annotated[int, Query(ge=1, le=500)]


class WorkerRequest(BaseModel):
    pool: str = Field(pattern=POOL)
    name: str = Field(min_length=1, max_length=128)


class AssignRequest(BaseModel):
    member_id: int = Field(gt=0, le=DB_INT_MAX)
    reason: str = Field(min_length=1, max_length=500)


class SplitRequest(BaseModel):
    pool: str = Field(pattern=POOL)
    payout_id: str = Field(min_length=1, max_length=128)
    amount: int = Field(gt=0, le=DB_INT_MAX)
    confirmations: int = Field(ge=0, le=DB_INT_MAX)
    coinbase: bool
    window_start: int | None = Field(default=None, ge=0, le=DB_INT_MAX)
    window_end: int = Field(gt=0, le=DB_INT_MAX)
    work: dict[str, float] | None = None


def _worker_json(pool: str, name: str, member_id: int) -> dict[str, Any]:
    return {"pool": pool, "name": name, "member_id": member_id}


def build_router(
    member: MemberDep,
    owner: OwnerDep,
    *,
    service: MiningService | None = None,
    work_source: WorkSource | None = None,
) -> APIRouter:
    """Member and owner mining routes, guarded by the given dependencies."""
    router = APIRouter(tags=["mining"])
    member_dep = Depends(member)
    owner_dep = Depends(owner)

    def mining_of(request: Request) -> MiningService:
        if service is not None:
            return service
        state = request.app.state
        found = getattr(state, "mining_service", None)
        if found is None:
            pools = mining_settings(getattr(state, "settings", None)).mining_pools
            found = MiningService(state.sessions, mining_config(pools))
            state.mining_service = found
        assert isinstance(found, MiningService)
        return found

    mining_dep = Depends(mining_of)

    def work_source_of(request: Request) -> WorkSource | None:
        """The given one, else the configured pools' stats APIs (``start_mining`` sets it)."""
        if work_source is not None:
            return work_source
        found: WorkSource | None = getattr(request.app.state, "mining_work_source", None)
        return found

    work_source_dep = Depends(work_source_of)

    # --- member -----------------------------------------------------------------------------

    @router.get("/v1/mining/workers")
    def my_workers(
        who: MemberLike = member_dep, mining: MiningService = mining_dep, pool: PoolQuery = None
    ) -> dict[str, Any]:
        rows = mining.workers(member_id=who.member_id, pool=pool)
        return {"workers": [_worker_json(w.pool, w.name, w.member_id) for w in rows]}

    @router.post("/v1/mining/workers", status_code=status.HTTP_201_CREATED)
    def register(
        body: WorkerRequest,
        response: Response,
        who: MemberLike = member_dep,
        mining: MiningService = mining_dep,
    ) -> dict[str, Any]:
        try:
            worker, created = mining.register(who.member_id, body.pool, body.name)
        except WorkerTakenError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        except MiningError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        if not created:
            response.status_code = status.HTTP_200_OK
        return _worker_json(worker.pool, worker.name, worker.member_id)

    @router.delete("/v1/mining/workers/{pool}/{name:path}", status_code=status.HTTP_204_NO_CONTENT)
    def unregister(
        pool: str, name: str, who: MemberLike = member_dep, mining: MiningService = mining_dep
    ) -> None:
        try:
            mining.remove(
                f"member:{who.member_id}",
                pool,
                name,
                "removed by the member",
                member_id=who.member_id,
            )
        except (UnknownWorkerError, MiningError) as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such worker") from exc

    @router.get("/v1/mining/payouts")
    def my_payouts(
        who: MemberLike = member_dep,
        mining: MiningService = mining_dep,
        pool: PoolQuery = None,
        limit: Limit = 100,
    ) -> dict[str, Any]:
        rows = mining.payouts(pool=pool, member_id=who.member_id, limit=limit)
        payouts = []
        for view in rows:
            data = view.as_json()
            part = data.pop("parts")[0]
            data.pop("unknown_workers")
            payouts.append({**data, "my_part": part})
        return {"payouts": payouts}

    # --- owner ------------------------------------------------------------------------------

    @router.get("/v1/owner/mining/workers")
    def all_workers(
        _: OwnerLike = owner_dep, mining: MiningService = mining_dep, pool: PoolQuery = None
    ) -> dict[str, Any]:
        rows = mining.workers(pool=pool)
        return {"workers": [_worker_json(w.pool, w.name, w.member_id) for w in rows]}

    @router.put("/v1/owner/mining/workers/{pool}/{name:path}")
    def assign(
        pool: str,
        name: str,
        body: AssignRequest,
        who: OwnerLike = owner_dep,
        mining: MiningService = mining_dep,
    ) -> dict[str, Any]:
        try:
            worker = mining.assign(who.actor, pool, name, body.member_id, body.reason)
        except MiningError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        return _worker_json(worker.pool, worker.name, worker.member_id)

    @router.delete(
        "/v1/owner/mining/workers/{pool}/{name:path}", status_code=status.HTTP_204_NO_CONTENT
    )
    def remove(
        pool: str,
        name: str,
        reason: Annotated[str, Query(min_length=1, max_length=500)],
        who: OwnerLike = owner_dep,
        mining: MiningService = mining_dep,
    ) -> None:
        try:
            mining.remove(who.actor, pool, name, reason)
        except MiningError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc

    @router.get("/v1/owner/mining/unknown-workers")
    def unknown(
        _: OwnerLike = owner_dep, mining: MiningService = mining_dep, pool: PoolQuery = None
    ) -> dict[str, Any]:
        rows = mining.unknown_workers(pool)
        return {
            "unknown_workers": [
                {"pool": u.pool, "worker": u.worker, "payouts": u.payouts, "work": u.work}
                for u in rows
            ]
        }

    @router.get("/v1/owner/mining/payouts")
    def all_payouts(
        _: OwnerLike = owner_dep,
        mining: MiningService = mining_dep,
        pool: PoolQuery = None,
        limit: Limit = 100,
    ) -> dict[str, Any]:
        return {"payouts": [v.as_json() for v in mining.payouts(pool=pool, limit=limit)]}

    @router.post("/v1/owner/mining/payouts", status_code=status.HTTP_201_CREATED)
    async def split(
        body: SplitRequest,
        response: Response,
        who: OwnerLike = owner_dep,
        mining: MiningService = mining_dep,
        stats: WorkSource | None = work_source_dep,
    ) -> dict[str, Any]:
        start = body.window_start
        if start is None:  # PPLNS since the previous payout (or this one's, when re-sent)
            known = mining.find(body.pool, body.payout_id)
            start = known.window_start if known else mining.last_window_end(body.pool)
            if start is None:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    "first payout of this pool: give window_start",
                )
        work: Mapping[str, float]
        if body.work is not None:
            work = body.work
        elif stats is None:
            # nothing is down: this node has no stats API, so the request must carry the work
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "no stats API is configured on this node: give work",
            )
        else:
            try:
                work = await stats(body.pool, start, body.window_end)
            except Exception as exc:  # the stats API is down or answered nonsense
                raise HTTPException(
                    status.HTTP_503_SERVICE_UNAVAILABLE, f"stats API: {exc}"
                ) from exc
        payout = PoolPayout(
            body.pool,
            body.payout_id,
            body.amount,
            body.confirmations,
            body.coinbase,
            start,
            body.window_end,
        )
        try:
            view, created = mining.split(payout, work, actor=who.actor)
        except PayoutConflictError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        except (ImmaturePayoutError, MiningError) as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        if not created:
            response.status_code = status.HTTP_200_OK
        return view.as_json()

    return router
