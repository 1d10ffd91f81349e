"""App factory of the Lightning API: ``create_app(settings)``; nothing is created at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from scnode_core.apikeys import Principal
from scnode_core.auth import require_scope
from scnode_core.chain_rpc import ChainRpcClient, RpcEndpoint
from scnode_core.eventjournal import Event, EventBus, serve_websocket
from scnode_core.keyring import KeyRing
from scnode_core.lightning_rpc import LightningClient, LightningRpcError, LightningUnavailableError
from scnode_core.openapi import DB_INT_MAX, document_error_details
from scnode_core.webapp import LatencyMiddleware
from scnode_lightning_api import __version__
from scnode_lightning_api.metrics import LightningMetrics
from scnode_lightning_api.rebalance import Rebalancer
from scnode_lightning_api.service import LightningService, RequestRefusedError
from scnode_lightning_api.settings import LightningApiSettings
from scnode_lightning_api.store import LightningApiStore
from scnode_lightning_api.watcher import LightningWatcher

log = logging.getLogger(__name__)
MAX_MSAT = 21_000_000 * 100_000_000 * 1000


class InvoiceRequest(BaseModel):
    member: str = Field(min_length=1, max_length=64)
    idempotency_key: str = Field(min_length=8, max_length=128)
    amount_msat: int | None = Field(default=None, gt=0, le=MAX_MSAT, description="None: any")
    description: str = Field(default="", max_length=640)
    expiry_seconds: int = Field(default=3600, ge=60, le=31 * 86400)


class PayRequest(BaseModel):
    member: str = Field(min_length=1, max_length=64)
    idempotency_key: str = Field(min_length=8, max_length=128)
    bolt11: str = Field(min_length=20, max_length=4096)
    amount_msat: int | None = Field(default=None, gt=0, le=MAX_MSAT)
    max_fee_msat: int | None = Field(default=None, ge=0, le=MAX_MSAT)


def create_app(settings: LightningApiSettings) -> FastAPI:
    keys = KeyRing(settings.api_keys_file)
    metrics = LightningMetrics()
    store = LightningApiStore(settings.state_db)
    bus = EventBus(store.events)
    bus.listeners.append(lambda e: _count(metrics, e))
    rpc = LightningClient(settings.rpc_socket, timeout=settings.rpc_timeout)
    bitcoind = None
    if settings.bitcoin_rpc_url and settings.bitcoin_rpc_user and settings.bitcoin_rpc_password:
        bitcoind = ChainRpcClient(
            RpcEndpoint(
                settings.bitcoin_rpc_url,
                settings.bitcoin_rpc_user,
                settings.bitcoin_rpc_password.get_secret_value(),
            ),
            timeout=10,
        )
    service = LightningService(
        rpc,
        store,
        bus,
        bitcoind=bitcoind,
        cluster_peer_id=settings.cluster_peer_id,
        pay_command=settings.pay_command,
        default_max_fee_base_msat=settings.default_max_fee_base_msat,
        default_max_fee_ppm=settings.default_max_fee_ppm,
        unsent_grace_seconds=settings.unsent_grace_seconds,
        sync_tolerance_blocks=settings.sync_tolerance_blocks,
    )
    watcher = LightningWatcher(
        rpc,
        store,
        bus,
        service,
        metrics,
        zmq_endpoints=settings.zmq_endpoints,
        poll_seconds=settings.poll_seconds,
        event_retention=settings.event_retention,
    )
    rebalancer = Rebalancer(settings, service, metrics) if settings.rebalance_enabled else None

    async def refresh_health_metrics() -> None:
        while True:
            try:
                health = await service.health()
                metrics.blockheight.set(health["blockheight"])
                metrics.blocks_behind.set(health["blocks_behind"] or 0)
                metrics.synced.set(1 if health["synced"] else 0)
            except (LightningUnavailableError, LightningRpcError):
                metrics.up.set(0)
            await asyncio.sleep(15)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The watcher's first pass settles payments a crash left pending.
        await watcher.start()
        poller = asyncio.create_task(refresh_health_metrics())
        if rebalancer is not None:
            await rebalancer.start()
        try:
            yield
        finally:
            if rebalancer is not None:
                await rebalancer.stop()
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await watcher.stop()
            rpc.close()
            if bitcoind is not None:
                await bitcoind.aclose()
            store.close()

    app = FastAPI(title="SC Node Lightning API", version=__version__, lifespan=lifespan)
    document_error_details(app)
    app.state.service = service
    app.state.watcher = watcher
    app.state.settings = settings

    read = Depends(require_scope(keys, "read"))
    invoice = Depends(require_scope(keys, "invoice"))
    pay = Depends(require_scope(keys, "pay"))

    app.add_middleware(LatencyMiddleware, histogram=metrics.latency)

    @app.exception_handler(RequestRefusedError)
    async def refused(_: Request, exc: RequestRefusedError) -> JSONResponse:
        return JSONResponse({"detail": exc.reason}, status_code=exc.status)

    @app.exception_handler(LightningUnavailableError)
    async def unavailable(_: Request, exc: LightningUnavailableError) -> JSONResponse:
        log.warning("lightningd unavailable: %s", exc)
        return JSONResponse(
            {"detail": "lightningd unavailable"}, status_code=503, headers={"Retry-After": "10"}
        )

    @app.exception_handler(LightningRpcError)
    async def rpc_error(_: Request, exc: LightningRpcError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"lightningd error {exc.code}: {exc.message}"}, status_code=502
        )

    # -- public, minimal -------------------------------------------------------------------
    async def _health() -> JSONResponse:
        try:
            await rpc.call("getinfo")
            up = True
        except (LightningUnavailableError, LightningRpcError):
            up = False
        return JSONResponse(
            {"status": "ok" if up else "down", "version": __version__},
            status_code=200 if up else 503,
        )

    app.add_api_route("/v1/health", _health, methods=["GET"], tags=["health"])
    app.add_api_route("/healthz", _health, methods=["GET"], tags=["health"])

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(_: Principal = read) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    v1 = APIRouter(prefix="/v1")

    @v1.get("/status")
    async def status(_: Principal = read) -> dict[str, Any]:
        health = await service.health()
        health["watcher_error"] = watcher.last_error
        return health

    @v1.get("/rebalance")
    async def rebalance(_: Principal = read) -> dict[str, Any]:
        if rebalancer is None:
            return {"enabled": False}
        return rebalancer.status()

    @v1.get("/node")
    async def node(_: Principal = read) -> dict[str, Any]:
        return await service.node_info()

    # -- invoices --------------------------------------------------------------------------
    @v1.post("/invoices")
    async def create_invoice(body: InvoiceRequest, _: Principal = invoice) -> JSONResponse:
        result, replayed = await service.create_invoice(
            member=body.member,
            idempotency_key=body.idempotency_key,
            amount_msat=body.amount_msat,
            description=body.description,
            expiry=body.expiry_seconds,
        )
        return JSONResponse({**result, "replayed": replayed}, status_code=200 if replayed else 201)

    @v1.get("/invoices")
    async def list_invoices(
        _: Principal = read,
        member: str | None = None,
        status: Literal["unpaid", "paid", "expired"] | None = None,
        # lightningd's u64 index; beyond a database integer it cannot exist (and a value beyond
        # u64 is lightningd's -32602, which came back as a 502)
        start: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        return await service.list_invoices(member=member, status=status, start=start, limit=limit)

    @v1.get("/invoices/{payment_hash}")
    async def get_invoice(payment_hash: str, _: Principal = read) -> dict[str, Any]:
        return await service.invoice_by_hash(payment_hash)

    # -- payments --------------------------------------------------------------------------
    @v1.post("/payments")
    async def create_payment(body: PayRequest, _: Principal = pay) -> JSONResponse:
        result = await service.pay(
            member=body.member,
            idempotency_key=body.idempotency_key,
            bolt11=body.bolt11,
            amount_msat=body.amount_msat,
            max_fee_msat=body.max_fee_msat,
        )
        return JSONResponse(
            {**result.payment.to_json(), "replayed": result.replayed},
            status_code=200 if result.replayed else 201,
        )

    @v1.get("/payments")
    async def list_payments(
        _: Principal = read,
        member: str | None = None,
        state: Literal["pending", "complete", "failed"] | None = None,
        after: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        rows = store.list_payments(member=member, state=state, after=after, limit=limit)
        return {
            "payments": [r.to_json() for r in rows],
            "next_after": rows[-1].id if rows else after,
            "more": len(rows) == limit,
        }

    @v1.get("/payments/{idempotency_key}")
    async def get_payment(idempotency_key: str, _: Principal = read) -> dict[str, Any]:
        return (await service.payment(idempotency_key)).to_json()

    # -- events ----------------------------------------------------------------------------
    @v1.get("/events/recent")
    async def recent(
        _: Principal = read, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> dict[str, Any]:
        return {"events": [e.to_json() for e in store.events.recent(limit)]}

    app.include_router(v1)

    @app.websocket("/v1/events/ws")
    async def events_ws(websocket: WebSocket, cursor: int | None = None) -> None:
        await serve_websocket(websocket, keys, bus, "read", cursor)

    return app


def _count(metrics: LightningMetrics, event: Event) -> None:
    metrics.events.labels(kind=event.kind).inc()
