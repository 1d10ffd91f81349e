"""App factory of the chain API: ``create_app(settings)``; nothing is created at import."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, WebSocket, status
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.websockets import WebSocketDisconnect

from scnode_chain_api import __version__
from scnode_chain_api.events import EventBus
from scnode_chain_api.metrics import ChainMetrics
from scnode_chain_api.readcache import MarkedCache
from scnode_chain_api.service import ChainService, RequestRefusedError
from scnode_chain_api.settings import ChainApiSettings
from scnode_chain_api.store import ChainApiStore
from scnode_chain_api.watcher import ChainWatcher
from scnode_core.apikeys import Principal
from scnode_core.auth import require_scope
from scnode_core.chain_rpc import (
    ChainAuthError,
    ChainRpcClient,
    ChainRpcError,
    ChainUnavailableError,
    ChainWarmingUpError,
    RpcEndpoint,
    to_sats,
)
from scnode_core.keyring import KeyRing
from scnode_core.openapi import DB_INT_MAX, document_error_details
from scnode_core.webapp import LatencyMiddleware

log = logging.getLogger(__name__)
SSE_KEEPALIVE_SECONDS = 15.0


class SendRequest(BaseModel):
    address: str = Field(min_length=14, max_length=128)
    amount_sats: int = Field(gt=0, le=2_100_000_000_000_000)
    idempotency_key: str = Field(min_length=8, max_length=128)
    fee_rate_sat_vb: int | None = Field(default=None, ge=1, le=10_000)
    subtract_fee: bool = False


def create_app(settings: ChainApiSettings) -> FastAPI:
    keys = KeyRing(settings.api_keys_file)
    metrics = ChainMetrics(settings.chain)
    store = ChainApiStore(settings.state_db)
    bus = EventBus(store)
    rpc = ChainRpcClient(
        RpcEndpoint(settings.rpc_url, settings.rpc_user, settings.rpc_password.get_secret_value()),
        timeout=settings.rpc_timeout,
    )
    zmq_endpoints = {
        topic: endpoint
        for topic, endpoint in (
            ("rawtx", settings.zmq_rawtx),
            ("hashblock", settings.zmq_hashblock),
            ("sequence", settings.zmq_sequence),
        )
        if endpoint
    }
    watcher = ChainWatcher(
        rpc,
        store,
        bus,
        wallet=settings.wallet,
        track_confirmations=settings.track_confirmations,
        zmq_endpoints=zmq_endpoints,
    )
    service = ChainService(
        rpc,
        store,
        watcher,
        chain=settings.chain,
        wallet=settings.wallet,
        address_cache_seconds=settings.address_cache_seconds,
    )
    caches: dict[str, MarkedCache[Any]] = {
        "address": service.received_cache,
        "balance": service.balance_cache,
    }
    for name, cache in caches.items():
        metrics.read_cache.labels(read=name, result="hit").set_function(_counter(cache, "hits"))
        metrics.read_cache.labels(read=name, result="miss").set_function(_counter(cache, "misses"))
    original_publish = bus.publish

    def counted_publish(kind: str, data: dict[str, Any]) -> Any:
        metrics.events.labels(kind=kind).inc()
        return original_publish(kind, data)

    bus.publish = counted_publish  # type: ignore[method-assign]

    async def refresh_metrics() -> None:
        while True:
            try:
                st = await service.status()
                metrics.blocks.set(st["blocks"] or 0)
                metrics.headers.set(st["headers"] or 0)
                metrics.peers.set(st["peers"] or 0)
                metrics.ibd.set(1 if st["initial_block_download"] else 0)
                mempool = await rpc.call("getmempoolinfo")
                metrics.mempool.set(int(mempool.get("size", 0)))
                for kind, sats in (await service.balance()).items():
                    metrics.balance.labels(kind=kind.removesuffix("_sats")).set(sats)
                metrics.up.set(1)
            except (ChainUnavailableError, ChainRpcError):
                metrics.up.set(0)
            await asyncio.sleep(15)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with contextlib.suppress(ChainUnavailableError, ChainRpcError):
            await service.reconcile_pending_sends()
        await watcher.start()
        poller = asyncio.create_task(refresh_metrics())
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await watcher.stop()
            await rpc.aclose()
            store.close()

    app = FastAPI(
        title=f"SC Node chain API ({settings.chain})",
        version=__version__,
        lifespan=lifespan,
    )
    document_error_details(app)
    app.state.service = service
    app.state.settings = settings
    app.state.metrics = metrics

    read = Depends(require_scope(keys, "read"))
    deposit = Depends(require_scope(keys, "deposit"))
    send = Depends(require_scope(keys, "send"))

    app.add_middleware(LatencyMiddleware, histogram=metrics.latency)

    @app.exception_handler(RequestRefusedError)
    async def refused(_: Request, exc: RequestRefusedError) -> JSONResponse:
        return JSONResponse({"detail": exc.reason}, status_code=exc.status)

    @app.exception_handler(ChainWarmingUpError)
    async def warming(_: Request, exc: ChainWarmingUpError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"{settings.chain} daemon is starting: {exc.message}"},
            status_code=503,
            headers={"Retry-After": "10"},
        )

    @app.exception_handler(ChainAuthError)
    async def rpc_auth(_: Request, exc: ChainAuthError) -> JSONResponse:
        log.error("RPC credentials refused: %s", exc)
        return JSONResponse(
            {"detail": f"{settings.chain} daemon refused this API's RPC credentials"},
            status_code=503,
        )

    @app.exception_handler(ChainUnavailableError)
    async def unavailable(_: Request, exc: ChainUnavailableError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"{settings.chain} daemon unavailable"},
            status_code=503,
            headers={"Retry-After": "10"},
        )

    @app.exception_handler(ChainRpcError)
    async def rpc_error(_: Request, exc: ChainRpcError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"{settings.chain} daemon error {exc.code}: {exc.message}"},
            status_code=502,
        )

    # -- public, minimal -------------------------------------------------------------------
    async def _health() -> JSONResponse:
        try:
            await rpc.call("getblockcount")
            up = True
        except (ChainUnavailableError, ChainRpcError):
            up = False
        return JSONResponse(
            {"status": "ok" if up else "down", "version": __version__},
            status_code=200 if up else 503,
        )

    app.add_api_route("/v1/health", _health, methods=["GET"], tags=["health"])
    app.add_api_route("/healthz", _health, methods=["GET"], tags=["health"])

    @app.get("/version", tags=["health"])
    async def version() -> dict[str, str]:
        return {"version": __version__, "chain": settings.chain}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(_: Principal = read) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- our API ---------------------------------------------------------------------------
    v1 = APIRouter(prefix="/v1")

    @v1.get("/status")
    async def chain_status(_: Principal = read) -> dict[str, Any]:
        return await service.status()

    @v1.post("/members/{member_id}/addresses", status_code=status.HTTP_201_CREATED)
    async def new_address(
        member_id: str, reuse_unused: bool = False, _: Principal = deposit
    ) -> dict[str, Any]:
        return await service.deposit_address(member_id, reuse_unused)

    @v1.get("/members/{member_id}/addresses")
    async def member_addresses(
        member_id: str, min_conf: Annotated[int, Query(ge=0, le=1000)] = 1, _: Principal = read
    ) -> dict[str, Any]:
        return await service.member_addresses(member_id, min_conf)

    @v1.get("/addresses/{address}")
    async def address(
        address: str, min_conf: Annotated[int, Query(ge=0, le=1000)] = 1, _: Principal = read
    ) -> dict[str, Any]:
        return await service.address_detail(address, min_conf)

    @v1.get("/transactions/{txid}")
    async def transaction(txid: str, _: Principal = read) -> dict[str, Any]:
        return await service.transaction(txid)

    @v1.get("/wallet/balance")
    async def balance(_: Principal = read) -> dict[str, Any]:
        return await service.balance()

    @v1.get("/fees/estimate")
    async def fees(
        _: Principal = read, target: Annotated[int, Query(ge=1, le=1008)] = 6
    ) -> dict[str, Any]:
        return await service.fee_estimate(target)

    async def _send(body: SendRequest) -> JSONResponse:
        result = await service.send(
            address=body.address,
            amount_sats=body.amount_sats,
            idempotency_key=body.idempotency_key,
            fee_rate_sat_vb=body.fee_rate_sat_vb,
            subtract_fee=body.subtract_fee,
        )
        return JSONResponse(
            {
                "txid": result.txid,
                "idempotency_key": result.idempotency_key,
                "replayed": result.replayed,
            },
            status_code=200 if result.replayed else 201,
        )

    @v1.post("/send")
    async def send_route(body: SendRequest, _: Principal = send) -> JSONResponse:
        return await _send(body)

    # -- events ----------------------------------------------------------------------------
    @v1.get("/events/recent")
    async def recent(
        _: Principal = read, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> dict[str, Any]:
        return {"events": [e.to_json() for e in store.recent_events(limit)]}

    @v1.get(
        "/events/stream",
        responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    )
    async def sse(
        request: Request,
        cursor: Annotated[int | None, Query(ge=0, le=DB_INT_MAX)] = None,
        _: Principal = read,
    ) -> StreamingResponse:
        last_id = request.headers.get("last-event-id")
        if last_id and not (last_id.isdigit() and int(last_id) <= DB_INT_MAX):
            raise HTTPException(422, "Last-Event-ID must be an event id")
        start = cursor if cursor is not None else int(last_id) if last_id else _tip_cursor()

        async def produce() -> AsyncIterator[bytes]:
            events = bus.stream(start).__aiter__()
            pending: asyncio.Task[Any] | None = None
            try:
                while True:
                    pending = pending or asyncio.ensure_future(events.__anext__())
                    done, _ = await asyncio.wait({pending}, timeout=SSE_KEEPALIVE_SECONDS)
                    if not done:
                        yield b": keep-alive\n\n"
                        continue
                    event = pending.result()
                    pending = None
                    payload = json.dumps(event.to_json(), separators=(",", ":"))
                    yield f"id: {event.id}\nevent: {event.kind}\ndata: {payload}\n\n".encode()
            except StopAsyncIteration:
                return
            finally:
                if pending is not None:
                    pending.cancel()

        return StreamingResponse(produce(), media_type="text/event-stream")

    def _tip_cursor() -> int:
        recent_events = store.recent_events(1)
        return recent_events[0].id if recent_events else 0

    @app.websocket("/v1/events/ws")
    async def events_ws(websocket: WebSocket, cursor: int | None = None) -> None:
        token = _ws_token(websocket)
        principal = keys().authenticate(token) if token else None
        if principal is None or "read" not in principal.scopes:
            await websocket.close(code=4401 if principal is None else 4403)
            return
        await websocket.accept()
        start = cursor if cursor is not None else _tip_cursor()
        oldest = store.oldest_event_id()
        if cursor is not None and oldest and cursor < oldest - 1:
            # The journal no longer reaches back that far: tell the client to resync.
            await websocket.send_json({"kind": "resync", "oldest": oldest})
        try:
            async for event in bus.stream(start):
                await websocket.send_json(event.to_json())
        except WebSocketDisconnect:
            return

    # -- upstream master-api paths (compatibility) -------------------------------------------
    p = settings.path_prefix
    compat = APIRouter(prefix=f"/v1/{p}", tags=["upstream-compatible"])

    @compat.get("/node/info")
    async def node_info(_: Principal = read) -> dict[str, Any]:
        net = await rpc.call("getnetworkinfo")
        return {
            "version": net.get("version"),
            "subversion": net.get("subversion"),
            "connections": net.get("connections"),
            "uptime": await rpc.call("uptime"),
        }

    @compat.get("/node/blockchain-info")
    async def blockchain_info(_: Principal = read) -> Any:
        return _jsonable(await rpc.call("getblockchaininfo"))

    @compat.get("/node/peers")
    async def peers(_: Principal = read) -> Any:
        return _jsonable(await rpc.call("getpeerinfo"))

    @compat.get("/mempool/info")
    async def mempool_info(_: Principal = read) -> Any:
        return _jsonable(await rpc.call("getmempoolinfo"))

    @compat.get("/wallet/summary")
    async def wallet_summary(_: Principal = read) -> dict[str, Any]:
        info = await rpc.call("getwalletinfo", wallet=settings.wallet)
        return {
            "wallet": info.get("walletname"),
            "txcount": info.get("txcount"),
            **await service.balance(),
        }

    @compat.get("/wallet/transactions")
    async def wallet_transactions(
        _: Principal = read,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        # a block hash (the daemon's -8 for anything else would have been a 502)
        since: Annotated[str | None, Query(pattern="^[0-9a-fA-F]{64}$")] = None,
    ) -> dict[str, Any]:
        try:
            result = await rpc.call("listsinceblock", since or "", 1, True, wallet=settings.wallet)
        except ChainRpcError as exc:
            if exc.code == -5:  # RPC_INVALID_ADDRESS_OR_KEY "Block not found": the caller's hash
                raise HTTPException(422, "since: no block with that hash on this node") from exc
            raise
        txs = sorted(result.get("transactions", []), key=lambda t: t.get("time", 0), reverse=True)[
            :limit
        ]
        return {
            "lastblock": result.get("lastblock"),
            "transactions": [
                {
                    "txid": t["txid"],
                    "vout": t.get("vout"),
                    "address": t.get("address"),
                    "category": t.get("category"),
                    "label": t.get("label"),
                    "amount_sats": to_sats(t["amount"]),
                    "confirmations": t.get("confirmations"),
                    "blockhash": t.get("blockhash"),
                    "time": t.get("time"),
                }
                for t in txs
            ],
        }

    @compat.get("/blocks/rewards")
    async def block_rewards(
        _: Principal = read, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> dict[str, Any]:
        entries = await rpc.call("listtransactions", "*", 1000, 0, True, wallet=settings.wallet)
        rewards = [
            {
                "txid": e["txid"],
                "blockhash": e.get("blockhash"),
                "blockheight": e.get("blockheight"),
                "amount_sats": to_sats(e["amount"]),
                "confirmations": e.get("confirmations"),
                "mature": e.get("category") == "generate",
                "stale": e.get("category") == "orphan",
                "category": e.get("category"),
            }
            for e in entries
            if e.get("category") in {"generate", "immature", "orphan"}
        ]
        rewards.sort(key=lambda r: r["confirmations"] or 0)
        return {"rewards": rewards[:limit], "maturity_confirmations": 100}

    app.include_router(v1)
    app.include_router(compat)

    @app.post("/v1/tx/send", tags=["upstream-compatible"])
    async def upstream_send(body: SendRequest, _: Principal = send) -> JSONResponse:
        return await _send(body)

    return app


def _ws_token(websocket: WebSocket) -> str | None:
    auth = websocket.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return websocket.headers.get("x-api-key")


def _jsonable(value: Any) -> Any:
    """RPC results carry Decimals; JSON responses must keep them as exact numbers."""
    return json.loads(json.dumps(value, default=str))


def _counter(cache: MarkedCache[Any], attribute: str) -> Callable[[], float]:
    return lambda: float(getattr(cache, attribute))
