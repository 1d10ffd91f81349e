"""App factory of the exchange: ``create_app(settings)``; nothing is created at import.

The lifespan migrates the database (Alembic), creates the assets, rebuilds the books, starts
the market-stats publisher and — when their packages are installed and configured — the
deposit watcher and the withdrawal worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.requests import HTTPConnection

from scnode_core.keyring import KeyRing
from scnode_core.openapi import document_error_details
from scnode_core.webapp import LatencyMiddleware
from scnode_exchange import __version__
from scnode_exchange.api import dashboard, market, member, owner, trade_ws
from scnode_exchange.api.auth import (
    OWNER_SCOPE,
    SESSION_COOKIE,
    MemberAuthenticator,
    SessionTokens,
    current_member,
    current_owner,
    member_from,
)
from scnode_exchange.api.integrations import (
    optional_module,
    start_deposits,
    start_mining,
    start_withdrawals,
)
from scnode_exchange.api.ratelimit import RateLimiter
from scnode_exchange.api.runtime import (
    ExchangeMetrics,
    Runtime,
    TooManyOpenOrdersError,
    make_read_engine,
)
from scnode_exchange.db import make_engine, make_sessionmaker, upgrade
from scnode_exchange.ledger import (
    InsufficientFundsError,
    Ledger,
    LedgerError,
    Member,
    MemberFrozenError,
    UnknownAccountError,
)
from scnode_exchange.lightning import start_lightning
from scnode_exchange.lightning.api import build_router as lightning_router
from scnode_exchange.lightning.payments_api import build_router as lightning_payments_router
from scnode_exchange.lightning.payworker import start_lightning_payments
from scnode_exchange.owner import OwnerOperations
from scnode_exchange.settings import ExchangeSettings
from scnode_exchange.solvency import start_solvency
from scnode_exchange.tokens import api as member_tokens
from scnode_exchange.tokens.api import MemberApiTokens
from scnode_exchange.trading.service import Exchange, OrderNotFoundError

log = logging.getLogger(__name__)
METRICS_SCOPE = "metrics"


class LabLogin(BaseModel):
    username: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@+-]+$")


def create_app(
    settings: ExchangeSettings, *, member_authenticator: MemberAuthenticator | None = None
) -> FastAPI:
    """The exchange app. ``member_authenticator`` replaces the built-in session tokens (the
    dashboards' OIDC login plugs in here)."""
    tokens = SessionTokens(settings.read_session_secret(), settings.session_ttl_seconds)
    keys = KeyRing(settings.owner_api_keys_file, required=False)
    metrics = ExchangeMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = await asyncio.to_thread(_start_runtime, settings, metrics)
        app.state.runtime = rt
        app.state.sessions = rt.sessions
        app.state.exchange = rt.exchange
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(rt.run_batches(stop), name="order-batches"),
            asyncio.create_task(market.publish_stats(rt, stop), name="market-stats"),
        ]
        workers = [
            start_withdrawals(app, settings, rt),
            start_deposits(app, settings, rt),
            start_mining(app, settings, rt),
            start_solvency(app, settings, rt),
            start_lightning(app, settings, rt),
            start_lightning_payments(app, settings, rt),
        ]
        for worker in workers:
            if worker is not None:
                tasks.append(asyncio.create_task(worker.run(stop), name=type(worker).__name__))
                log.info("started %s", type(worker).__name__)
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 10)
            for worker in workers:
                # the withdrawal worker's chain API clients hold HTTP sessions
                for sender in getattr(worker, "chains", {}).values():
                    with contextlib.suppress(Exception):
                        await sender.aclose()
            rt.dispose()

    app = FastAPI(title="SC Node exchange", version=__version__, lifespan=lifespan)
    document_error_details(app)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.member_authenticator = MemberApiTokens(app.state, member_authenticator or tokens)
    app.state.session_tokens = tokens
    app.state.owner_keys = keys
    app.state.lightning = None
    app.state.lightning_payments = None

    app.add_middleware(LatencyMiddleware, histogram=metrics.latency)
    _error_handlers(app)

    @app.get("/healthz", tags=["health"])
    @app.get("/v1/health", tags=["health"])
    @app.get("/api/health", tags=["health"])
    async def health(request: Request) -> JSONResponse:
        up = getattr(request.app.state, "runtime", None) is not None
        return JSONResponse(
            {"status": "ok" if up else "down", "version": __version__},
            status_code=200 if up else 503,
        )

    def metrics_key(conn: HTTPConnection) -> None:
        token = conn.headers.get("x-api-key") or conn.headers.get("authorization", "")
        principal = keys().authenticate(token.removeprefix("Bearer ").strip())
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "API key required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not principal.scopes & {METRICS_SCOPE, OWNER_SCOPE}:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "metrics or owner scope required")

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(metrics_key)])
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(_auth_router(settings, tokens))
    app.include_router(market.build_router())
    app.include_router(member.build_router())
    app.include_router(trade_ws.build_router())
    app.include_router(owner.build_router())
    app.include_router(dashboard.build_router())
    app.include_router(member_tokens.build_router())
    # Lightning deposits: the service exists once the lifespan started it (settings.lightning)
    money = Depends(_money_limit(settings))
    app.include_router(
        lightning_router(current_member, lambda: app.state.lightning), dependencies=[money]
    )
    # Lightning payments: new ones need settings.lightning; reads come from the database
    app.include_router(
        lightning_payments_router(
            current_member,
            lambda: app.state.lightning_payments,
            lambda request: request.app.state.sessions,
        ),
        dependencies=[money],
    )
    for package in (
        "scnode_exchange.deposits.api",
        "scnode_exchange.withdrawals.api",
        "scnode_exchange.mining.api",
        "scnode_exchange.solvency.api",
    ):
        module = optional_module(package)
        if module is not None and hasattr(module, "build_router"):
            limited = package.endswith((".deposits.api", ".withdrawals.api"))
            app.include_router(
                module.build_router(current_member, current_owner),
                dependencies=[money] if limited else [],
            )
            log.info("mounted %s", package)
    return app


def _start_runtime(settings: ExchangeSettings, metrics: ExchangeMetrics) -> Runtime:
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        Ledger(session).ensure_assets([a.spec() for a in settings.extra_assets])
    exchange = Exchange(sessions, settings.market_specs())
    return Runtime(
        settings,
        engine,
        sessions,
        exchange,
        OwnerOperations(sessions),
        metrics,
        read_engine=make_read_engine(settings.database_url, engine),
    )


def _money_limit(settings: ExchangeSettings) -> Callable[[Request], None]:
    """Dependency of the routers that move money: a member's changes (POST, PUT, DELETE; not
    the owner's routes) share one bucket of ``money_requests_per_minute`` → 429 beyond it. A
    request without a valid member goes on to the route's own check (401/403)."""
    limiter = RateLimiter(
        settings.money_requests_per_minute / 60, settings.money_requests_per_minute
    )

    def money_limit(request: Request) -> None:
        if request.method in ("GET", "HEAD") or request.url.path.startswith("/v1/owner/"):
            return
        try:
            who = member_from(request)
        except HTTPException:
            return
        limiter.check(f"money:{who.member_id}")

    return money_limit


def _auth_router(settings: ExchangeSettings, tokens: SessionTokens) -> APIRouter:
    router = APIRouter(prefix="/api/auth", tags=["auth"])

    @router.post("/register")
    async def register() -> JSONResponse:
        return JSONResponse(
            {"detail": "registration is closed: the node's owner adds members"},
            status_code=status.HTTP_403_FORBIDDEN,
        )

    @router.post("/logout")
    async def logout() -> JSONResponse:
        response = JSONResponse({"detail": "logged out"})
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    if not settings.lab_mode:
        return router
    logins = RateLimiter(settings.logins_per_minute / 60, settings.logins_per_minute)

    @router.post("/login")
    def lab_login(body: LabLogin, request: Request) -> JSONResponse:
        """Lab only: log in as an existing member by handle, no password."""
        client = request.client.host if request.client else "unknown"
        logins.check(f"login:{client}")
        rt: Runtime = request.app.state.runtime
        with rt.readers() as session:
            member_id = session.scalar(select(Member.id).where(Member.handle == body.username))
        if member_id is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "no such member in the lab")
        token = tokens.issue(member_id)
        response = JSONResponse(
            {"token": token, "member_id": member_id, "expires_in": tokens.ttl_seconds}
        )
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=tokens.ttl_seconds,
            httponly=True,
            secure=settings.cookie_secure,
            samesite="strict",
            path="/",
        )
        return response

    return router


def _error_handlers(app: FastAPI) -> None:
    """Refusals become 4xx with a reason; nothing leaks a stack trace."""

    def reply(code: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def handler(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=code)

        return handler

    app.add_exception_handler(OrderNotFoundError, reply(status.HTTP_404_NOT_FOUND))
    app.add_exception_handler(TooManyOpenOrdersError, reply(status.HTTP_429_TOO_MANY_REQUESTS))
    app.add_exception_handler(UnknownAccountError, reply(status.HTTP_404_NOT_FOUND))
    app.add_exception_handler(InsufficientFundsError, reply(status.HTTP_409_CONFLICT))
    app.add_exception_handler(MemberFrozenError, reply(status.HTTP_409_CONFLICT))
    app.add_exception_handler(LedgerError, reply(status.HTTP_409_CONFLICT))
    app.add_exception_handler(ValueError, reply(status.HTTP_422_UNPROCESSABLE_CONTENT))

    async def integrity(_: Request, exc: Exception) -> JSONResponse:
        log.info("refused by a database constraint: %s", exc)
        return JSONResponse(
            {"detail": "conflicts with existing data (duplicate or in use)"},
            status_code=status.HTTP_409_CONFLICT,
        )

    async def busy(_: Request, exc: Exception) -> JSONResponse:
        if "disk is full" in str(exc) or "No space left" in str(exc):
            log.error("database storage full: %s", exc)
            return JSONResponse(
                {"detail": "the exchange's storage is full: nothing was written, retry later"},
                status_code=507,
                headers={"Retry-After": "30"},
            )
        log.warning("database busy: %s", exc)
        return JSONResponse(
            {"detail": "database busy, retry"}, status_code=503, headers={"Retry-After": "1"}
        )

    app.add_exception_handler(IntegrityError, integrity)
    app.add_exception_handler(OperationalError, busy)
