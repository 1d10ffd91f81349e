"""App factory of the member dashboard: ``create_app(settings)``; nothing is created at import.

Sign-in has two steps. First factor: BTCofAZ over OpenID Connect (``/auth/oidc/start`` →
provider → ``/auth/oidc/callback``) or a local account (``POST /login/local``). Second factor:
TOTP (``/2fa``), enrolled on first sign-in (``/2fa/enrol``) with ten one-time recovery codes.
Each step gets a new session id (no fixation). Only a ``full`` session sees member pages.

Sessions are server-side rows (``store.py``); the cookie carries a random id (HttpOnly,
SameSite=Lax — the provider's redirect back is a cross-site navigation, which Strict would
strip — Secure and ``__Host-`` prefixed outside tests). Every POST needs the session's CSRF
token (form field ``csrf_token`` or header ``X-CSRF-Token``) and, when the browser sends an
``Origin``, this dashboard's origin. Sessions end after ``session_idle_seconds`` without a
request and ``session_absolute_seconds`` after sign-in. Key changes (new recovery codes, a new
TOTP secret) need a TOTP re-entry within ``reauth_seconds``.

Sign-in attempts are rate limited per client address; ``max_failures`` bad passwords or codes
in a row lock the account for ``lockout_seconds``. Every sign-in event lands in the audit table.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scnode_dashboard import __version__, security
from scnode_dashboard.exchange import ExchangeClient, ExchangeError
from scnode_dashboard.oidc import OidcClient, OidcError
from scnode_dashboard.pages import PageTools
from scnode_dashboard.settings import DashboardSettings
from scnode_dashboard.store import ANON, ENROL, FULL, TOTP, Session, Store, User

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
TOUCH_EVERY = 15.0  # seconds: last_seen is written at most this often per session
TOKEN_MARGIN = 300  # renew the exchange token this long before it expires
ANON_TTL = 600.0  # an unfinished sign-in (OIDC state, first factor only) lasts 10 minutes
PURGE_EVERY = 300.0  # seconds between deletions of ended sessions
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


FROZEN = (
    "The node's owner has frozen your member account: nothing can be traded or withdrawn and "
    "the dashboard is closed to it. Ask the owner."
)


class PageError(Exception):
    """Ends a request with an HTML error page (status + message for the member)."""

    def __init__(self, status: int, message: str, title: str = "Refused") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title


class RedirectError(Exception):
    """Ends a request with a 303 to ``location`` (sign-in needed, next step, …)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


@dataclass
class Ctx:
    """The request's session (possibly anonymous) and, once signed in, its user."""

    request: Request
    session: Session
    session_id: str
    user: User | None
    new_cookie: str | None = None  # set on the response when the session id changed

    @property
    def ip(self) -> str:
        return client_ip(self.request)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class SignInLimiter:
    """Token bucket per client address for sign-in attempts (in memory, one process)."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > 10_000:  # forget idle addresses
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 120}
        return True


class SecurityHeaders:
    """CSP, no framing, no sniffing, referrers only to this origin (the callback URL holds a
    code; "no-referrer" would make Chromium send `Origin: null` on our own forms), no caching
    of member pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                ]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, sending)


def format_amount(value: int, asset: str, decimals: dict[str, int]) -> str:
    """Base units as a decimal number with thousands separators (exact, no float)."""
    places = decimals.get(asset, 0)
    number = Decimal(value).scaleb(-places)
    return f"{number:,.{places}f}"


def expired(settings: DashboardSettings, session: Session, now: float) -> bool:
    if session.stage == FULL:
        return (
            now - session.last_seen > settings.session_idle_seconds
            or now - session.created > settings.session_absolute_seconds
        )
    return now - session.created > ANON_TTL


async def context(request: Request) -> Ctx:
    """The request's session; a fresh anonymous one when it has none (or it ended)."""
    settings: DashboardSettings = request.app.state.settings
    store: Store = request.app.state.store
    cookie_name: str = request.app.state.cookie_name
    now = time.time()
    if now - request.app.state.purged_at > PURGE_EVERY:
        request.app.state.purged_at = now
        store.purge_sessions(
            now, settings.session_idle_seconds, settings.session_absolute_seconds, ANON_TTL
        )
    session_id = request.cookies.get(cookie_name, "")
    session = store.session(session_id) if session_id else None
    if session is not None and expired(settings, session, now):
        store.delete_session(session.id_hash)
        if session.stage == FULL:
            store.audit("session_expired", session.user_id, client_ip(request))
        session = None
    if session is None:
        session_id, session = store.new_session(
            client_ip(request), request.headers.get("user-agent", "")
        )
        return Ctx(request, session, session_id, None, new_cookie=session_id)
    if now - session.last_seen > TOUCH_EVERY:
        store.touch(session.id_hash)
    user = store.user(session.user_id) if session.user_id is not None else None
    return Ctx(request, session, session_id, user)


CtxDep = Annotated[Ctx, Depends(context)]


async def csrf(request: Request, ctx: CtxDep) -> Ctx:
    """Every state-changing request: same-origin (when the browser says) and the
    session's CSRF token."""
    settings: DashboardSettings = request.app.state.settings
    store: Store = request.app.state.store
    origin = request.headers.get("origin")
    sent = request.headers.get("x-csrf-token")
    if sent is None:
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    origin_ok = origin is None or origin == settings.origin
    token_ok = (
        sent is not None
        and ctx.new_cookie is None
        and hmac.compare_digest(sent.encode(), ctx.session.csrf.encode())
    )
    if not (origin_ok and token_ok):
        store.audit(
            "csrf_refused",
            ctx.session.user_id,
            ctx.ip,
            f"{request.method} {request.url.path} origin={origin!r}",
        )
        raise PageError(
            403,
            "This form is out of date or did not come from this dashboard. "
            "Reload the page and try again.",
        )
    return ctx


CsrfDep = Annotated[Ctx, Depends(csrf)]


def signed_in_member(ctx: Ctx) -> tuple[Ctx, User]:
    if ctx.session.stage != FULL or ctx.user is None:
        raise RedirectError("/login")
    if ctx.user.is_owner:  # the owner's pages are /owner/... (no member account)
        raise RedirectError("/owner")
    return ctx, ctx.user


async def member_page(ctx: CtxDep) -> Ctx:
    signed_in_member(ctx)
    return ctx


async def member_post(ctx: CsrfDep) -> Ctx:
    signed_in_member(ctx)
    return ctx


MemberDep = Annotated[Ctx, Depends(member_page)]
MemberPostDep = Annotated[Ctx, Depends(member_post)]


def signed_in_user(ctx: Ctx) -> tuple[Ctx, User]:
    """Any fully signed-in user, member or owner (their own account page and re-auth)."""
    if ctx.session.stage != FULL or ctx.user is None:
        raise RedirectError("/login")
    return ctx, ctx.user


async def user_page(ctx: CtxDep) -> Ctx:
    signed_in_user(ctx)
    return ctx


async def user_post(ctx: CsrfDep) -> Ctx:
    signed_in_user(ctx)
    return ctx


UserDep = Annotated[Ctx, Depends(user_page)]
UserPostDep = Annotated[Ctx, Depends(user_post)]
MIN_PASSWORD = 12  # characters of a local account's password (as add-local-user)


def parse_amount(text: str, decimals: int) -> int:
    """A typed decimal amount in base units, exactly (no float); ``ValueError`` with a reason
    for the member when it is not a positive number with at most ``decimals`` places."""
    try:
        value = Decimal(text.strip().replace(",", "").replace("_", ""))
    except ArithmeticError as exc:
        raise ValueError("The amount is not a number.") from exc
    if not value.is_finite():
        raise ValueError("The amount is not a number.")
    units = value.scaleb(decimals)
    if units <= 0 or units != units.to_integral_value():
        raise ValueError(f"The amount must be positive with at most {decimals} decimal places.")
    return int(units)


def create_app(
    settings: DashboardSettings,
    *,
    exchange: ExchangeClient | None = None,
    oidc: OidcClient | None = None,
) -> FastAPI:
    """The dashboard app; ``exchange``/``oidc`` replace the clients built from the settings."""
    store = Store(settings.database_path)
    if exchange is None:
        exchange = ExchangeClient(settings.exchange_url, settings.exchange_key)
    if oidc is None and settings.oidc_discovery_url:
        oidc = OidcClient(
            settings.oidc_discovery_url,
            settings.oidc_client_id,
            settings.oidc_client_secret.get_secret_value(),
            settings.url("/auth/oidc/callback"),
            settings.oidc_scopes,
        )
    limiter = SignInLimiter(settings.logins_per_minute)
    cookie_name = "__Host-scnode_dashboard" if settings.cookie_secure else "scnode_dashboard"
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["amount"] = lambda v, a: format_amount(v, a, settings.asset_decimals)
    templates.env.filters["when"] = lambda ts: time.strftime(
        "%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(ts))
    )
    templates.env.globals["provider_name"] = settings.oidc_provider_name
    templates.env.globals["oidc_enabled"] = oidc is not None
    templates.env.globals["version"] = __version__

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            assert exchange is not None
            await exchange.aclose()
            store.close()

    app = FastAPI(
        title="SC Node member dashboard",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.cookie_name = cookie_name
    app.state.purged_at = 0.0
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    # ----------------------------------------------------------------- helpers
    def render(ctx: Ctx | None, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        request = ctx.request if ctx else values.pop("request")
        context = {
            "user": ctx.user if ctx and ctx.session.stage == FULL else None,
            "csrf_token": ctx.session.csrf if ctx else "",
            **values,
        }
        response = templates.TemplateResponse(request, name, context, status_code=status)
        if ctx is not None and ctx.new_cookie:
            set_cookie(response, ctx.new_cookie)
        return response

    def set_cookie(response: Response, session_id: str) -> None:
        response.set_cookie(
            cookie_name,
            session_id,
            max_age=settings.session_absolute_seconds,
            httponly=True,
            secure=settings.cookie_secure,
            samesite="lax",
            path="/",
        )

    def redirect(ctx: Ctx | None, location: str) -> RedirectResponse:
        response = RedirectResponse(location, status_code=303)
        if ctx is not None and ctx.new_cookie:
            set_cookie(response, ctx.new_cookie)
        return response

    async def exchange_token(ctx: Ctx) -> str:
        """The member's exchange session token, renewed shortly before it expires."""
        assert ctx.user is not None
        session = ctx.session
        if session.exchange_token and session.exchange_token_exp - time.time() > TOKEN_MARGIN:
            return session.exchange_token
        assert exchange is not None
        got = await exchange.member_token(ctx.user.member_handle)
        if got.frozen:  # the owner froze the account since this session signed in
            store.delete_session(session.id_hash)
            store.audit("session_ended_frozen", ctx.user.id, ctx.ip)
            raise PageError(403, FROZEN, "Account frozen")
        store.update_session(
            session.id_hash, exchange_token=got.token, exchange_token_exp=got.expires_at
        )
        return got.token

    def rate_limited(ctx: Ctx, what: str) -> None:
        if not limiter.allow(ctx.ip):
            store.audit("rate_limited", ctx.session.user_id, ctx.ip, what)
            raise PageError(429, "Too many sign-in attempts from your address. Wait a minute.")

    def refuse_locked(ctx: Ctx, user: User) -> None:
        if user.locked_until > time.time():
            store.audit("login_refused_locked", user.id, ctx.ip)
            raise PageError(
                423,
                "This account is locked after too many wrong codes or passwords. "
                f"Try again after {time.strftime('%H:%M UTC', time.gmtime(user.locked_until))}.",
                "Account locked",
            )

    def failed(ctx: Ctx, user: User, event: str) -> bool:
        """Count a failure; on lock-out end the session and return True."""
        store.audit(event, user.id, ctx.ip)
        if store.record_failure(user.id, settings.max_failures, settings.lockout_seconds):
            store.audit("lockout", user.id, ctx.ip, f"after {settings.max_failures} failures")
            store.delete_session(ctx.session.id_hash)
            return True
        return False

    async def first_factor_done(ctx: Ctx, user: User, how: str) -> RedirectResponse:
        refuse_locked(ctx, user)
        stage = TOTP if user.has_totp else ENROL
        session_id, session = store.promote(ctx.session, user.id, stage, ctx.ip)
        store.audit("first_factor_ok", user.id, ctx.ip, how)
        ctx.session, ctx.session_id, ctx.new_cookie, ctx.user = (
            session,
            session_id,
            session_id,
            user,
        )
        return redirect(ctx, "/2fa" if stage == TOTP else "/2fa/enrol")

    async def signed_in(ctx: Ctx, user: User, how: str) -> None:
        """Second factor passed: a new full session with a fresh exchange token."""
        assert exchange is not None
        got = None
        try:
            if not user.is_owner:  # an owner has no member account (the /owner pages)
                got = await exchange.member_token(user.member_handle)
        except ExchangeError as exc:
            raise PageError(
                503, f"The exchange cannot be reached right now ({exc.detail})."
            ) from exc
        if got is not None and got.frozen:
            store.audit("login_refused_frozen", user.id, ctx.ip)
            raise PageError(403, FROZEN, "Account frozen")
        store.clear_failures(user.id)
        session_id, session = store.promote(ctx.session, user.id, FULL, ctx.ip)
        if got is not None:
            store.update_session(
                session.id_hash, exchange_token=got.token, exchange_token_exp=got.expires_at
            )
        store.audit("login_ok", user.id, ctx.ip, how)
        ctx.session, ctx.session_id, ctx.new_cookie, ctx.user = (
            session,
            session_id,
            session_id,
            user,
        )

    def check_code(user: User, code: str) -> tuple[str, int | None] | None:
        """('totp', step) or ('recovery', code id) when the code is right, else None."""
        assert user.totp_secret is not None
        step = security.totp_step(user.totp_secret, code, user.totp_last_step)
        if step is not None:
            return ("totp", step)
        normal = security.normal_recovery_code(code)
        if len(normal) == 14:
            for code_id, code_hash in store.unused_recovery_codes(user.id):
                if security.verify_secret(code_hash, normal):
                    return ("recovery", code_id)
        return None

    def consume(user: User, kind: str, value: int | None, ctx: Ctx) -> bool:
        assert value is not None
        if kind == "totp":
            return store.use_totp_step(user.id, value)
        used = store.use_recovery_code(value)
        if used:
            left = len(store.unused_recovery_codes(user.id))
            store.audit("recovery_code_used", user.id, ctx.ip, f"{left} left")
        return used

    def safe_next(value: str | None) -> str:
        if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
            return value
        return "/account"

    # ------------------------------------------------------------------ errors
    async def page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return templates.TemplateResponse(
            request,
            "error.html",
            {"title": exc.title, "message": exc.message, "user": None, "csrf_token": ""},
            status_code=exc.status,
        )

    async def to_location(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RedirectError)
        return RedirectResponse(exc.location, status_code=303)

    app.add_exception_handler(PageError, page_error)
    app.add_exception_handler(RedirectError, to_location)

    # ------------------------------------------------------------------ routes
    @app.get("/healthz", include_in_schema=False)
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    @app.get("/")
    async def home(ctx: CtxDep) -> Response:
        return redirect(ctx, "/wallet" if ctx.session.stage == FULL else "/login")

    @app.get("/login")
    async def login_page(ctx: CtxDep, error: str = "") -> Response:
        if ctx.session.stage == FULL:
            return redirect(ctx, "/wallet")
        return render(ctx, "login.html", error=error)

    @app.get("/auth/oidc/start")
    async def oidc_start(ctx: CtxDep) -> Response:
        if oidc is None:
            raise PageError(404, "Sign-in with the shared login is not set up on this node.")
        rate_limited(ctx, "oidc_start")
        try:
            start = await oidc.start()
        except OidcError as exc:
            raise PageError(503, str(exc), "Sign-in unavailable") from exc
        store.update_session(
            ctx.session.id_hash,
            oidc_state=start.state,
            oidc_nonce=start.nonce,
            oidc_verifier=start.verifier,
        )
        return redirect(ctx, start.url)

    @app.get("/auth/oidc/callback")
    async def oidc_callback(
        ctx: CtxDep, code: str = "", state: str = "", error: str = ""
    ) -> Response:
        if oidc is None:
            raise PageError(404, "Sign-in with the shared login is not set up on this node.")
        session = ctx.session
        expected = session.oidc_state or ""
        # single use: the state, nonce and verifier are gone whatever happens next
        if session.oidc_state is not None:
            store.update_session(
                session.id_hash, oidc_state=None, oidc_nonce=None, oidc_verifier=None
            )
        if not expected or not hmac.compare_digest(state.encode(), expected.encode()):
            store.audit("oidc_state_mismatch", None, ctx.ip)
            raise PageError(400, "This sign-in link expired or was not started here. Start again.")
        if error or not code:
            store.audit("oidc_denied", None, ctx.ip, error[:64])
            return redirect(ctx, "/login?error=denied")
        assert session.oidc_verifier is not None and session.oidc_nonce is not None
        try:
            identity = await oidc.finish(code, session.oidc_verifier, session.oidc_nonce)
        except OidcError as exc:
            store.audit("oidc_failed", None, ctx.ip, str(exc))
            raise PageError(400, f"Sign-in failed: {exc}") from exc
        user = store.oidc_user(identity.issuer, identity.subject)
        if user is None:
            user = await link_member(ctx, identity.issuer, identity.subject, identity.username)
        return await first_factor_done(ctx, user, "oidc")

    async def link_member(ctx: Ctx, issuer: str, subject: str, username: str) -> User:
        """First sign-in of a BTCofAZ user: bind its subject to the exchange member whose
        handle is its username (the owner created the member with that handle)."""
        if store.user_by_handle(username) is not None:
            store.audit("oidc_link_refused", None, ctx.ip, f"handle {username!r} taken")
            raise PageError(403, "This member account is already linked to another sign-in.")
        assert exchange is not None
        try:
            await exchange.member_token(username)
        except ExchangeError as exc:
            if exc.status == 404:
                store.audit("oidc_no_member", None, ctx.ip, username)
                raise PageError(
                    403,
                    f"{settings.oidc_provider_name} user {username!r} has no member account on "
                    "this node. Ask the node's owner to add you.",
                    "Not a member",
                ) from exc
            raise PageError(
                503, f"The exchange cannot be reached right now ({exc.detail})."
            ) from exc
        user = store.add_oidc_user(issuer, subject, username, username)
        store.audit("oidc_linked", user.id, ctx.ip, f"{issuer} {subject} -> {username}")
        return user

    @app.post("/login/local")
    async def local_login(
        ctx: CsrfDep,
        username: Annotated[str, Form(max_length=128)],
        password: Annotated[str, Form(max_length=1024)],
    ) -> Response:
        rate_limited(ctx, "local_login")
        user = store.local_user(username)
        if user is None or user.password_hash is None:
            security.verify_secret(_DUMMY_HASH, password)  # same time for unknown users
            store.audit("login_failed", None, ctx.ip, f"unknown local user {username[:64]!r}")
            return render(ctx, "login.html", 401, error="Wrong username or password.")
        refuse_locked(ctx, user)
        if not security.verify_secret(user.password_hash, password):
            if failed(ctx, user, "login_failed"):
                raise PageError(
                    423, "Too many wrong passwords: the account is locked.", "Account locked"
                )
            return render(ctx, "login.html", 401, error="Wrong username or password.")
        return await first_factor_done(ctx, user, "local")

    @app.get("/2fa")
    async def totp_page(ctx: CtxDep) -> Response:
        if ctx.session.stage != TOTP:
            return redirect(ctx, "/login" if ctx.session.stage == ANON else "/")
        return render(ctx, "totp.html", action="/2fa", heading="Two-factor code")

    @app.post("/2fa")
    async def totp_submit(ctx: CsrfDep, code: Annotated[str, Form(max_length=32)]) -> Response:
        if ctx.session.stage != TOTP or ctx.user is None:
            return redirect(ctx, "/login")
        rate_limited(ctx, "totp")
        user = ctx.user
        refuse_locked(ctx, user)
        found = check_code(user, code)
        if found is None or not consume(user, found[0], found[1], ctx):
            if failed(ctx, user, "totp_failed"):
                raise PageError(
                    423,
                    "Too many wrong codes: the account is locked "
                    f"for {settings.lockout_seconds // 60} minutes.",
                    "Account locked",
                )
            return render(
                ctx, "totp.html", 401, action="/2fa", heading="Two-factor code",
                error="Wrong or already used code.",
            )  # fmt: skip
        await signed_in(ctx, user, found[0])
        return redirect(ctx, "/wallet")

    @app.get("/2fa/enrol")
    async def enrol_page(ctx: CtxDep) -> Response:
        user = ctx.user
        allowed = ctx.session.stage == ENROL or (
            ctx.session.stage == FULL and user is not None and user.totp_pending is not None
        )
        if not allowed or user is None:
            return redirect(ctx, "/login" if ctx.session.stage == ANON else "/account")
        secret = user.totp_pending
        if secret is None:
            secret = security.new_totp_secret()
            store.set_totp_pending(user.id, secret)
        uri = security.totp_uri(secret, user.username, settings.totp_issuer)
        return render(ctx, "enrol.html", secret=secret, qr=security.qr_svg(uri))

    @app.post("/2fa/enrol")
    async def enrol_submit(ctx: CsrfDep, code: Annotated[str, Form(max_length=32)]) -> Response:
        user = ctx.user
        if user is None or user.totp_pending is None or ctx.session.stage not in (ENROL, FULL):
            return redirect(ctx, "/login")
        rate_limited(ctx, "enrol")
        refuse_locked(ctx, user)
        step = security.totp_step(user.totp_pending, code, 0)
        if step is None:
            if failed(ctx, user, "enrol_failed"):
                raise PageError(
                    423, "Too many wrong codes: the account is locked.", "Account locked"
                )
            secret = user.totp_pending
            uri = security.totp_uri(secret, user.username, settings.totp_issuer)
            return render(
                ctx, "enrol.html", 401, secret=secret, qr=security.qr_svg(uri),
                error="That code does not match. Check the time on your phone and try again.",
            )  # fmt: skip
        codes = security.new_recovery_codes()
        store.activate_totp(user.id, step, [security.hash_recovery_code(c) for c in codes])
        store.audit("totp_enrolled", user.id, ctx.ip)
        if ctx.session.stage == ENROL:
            refreshed = store.user(user.id)
            assert refreshed is not None
            await signed_in(ctx, refreshed, "totp_enrolment")
        return render(ctx, "recovery_codes.html", codes=codes)

    @app.get("/wallet")
    async def wallet(
        ctx: MemberDep,
        invoice: Annotated[str, Query(max_length=64)] = "",
        ln_error: Annotated[str, Query(max_length=300)] = "",
    ) -> Response:
        from scnode_dashboard import lightning

        token = await exchange_token(ctx)
        assert exchange is not None
        try:
            me = await exchange.get(token, "/api/auth/me")
            balances = await exchange.get(token, "/api/balances")
            history = await exchange.get(token, "/api/history", limit=25)
            pending = (await exchange.get(token, "/v1/deposits/pending"))["deposits"]
        except ExchangeError as exc:
            raise PageError(
                503, f"The exchange cannot be reached right now ({exc.detail})."
            ) from exc
        deposits = []
        for chain in settings.deposit_chains:
            try:
                got = await exchange.get(token, "/v1/deposits/address", chain=chain)
            except ExchangeError as exc:
                deposits.append({"chain": chain, "error": exc.detail})
                continue
            uri = f"bitcoin:{got['address']}" if chain == "bitcoin" else got["address"]
            deposits.append({**got, "qr": security.qr_svg(uri)})
        ln = await lightning.section(exchange, token, invoice, ln_error)
        return render(
            ctx, "wallet.html", balances=balances, history=history["items"],
            pending=pending, deposits=deposits, frozen=bool(me.get("frozen")), ln=ln,
        )  # fmt: skip

    @app.get("/wallet/history.csv")
    async def history_csv(ctx: MemberDep) -> Response:
        token = await exchange_token(ctx)
        assert exchange is not None
        try:
            body = await exchange.stream(token, "/api/history.csv")
        except ExchangeError as exc:
            raise PageError(503, f"The export is not available right now ({exc.detail}).") from exc
        return StreamingResponse(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="history.csv"'},
        )

    @app.get("/orders/{order_id}")
    async def order_page(order_id: int, ctx: MemberDep) -> Response:
        token = await exchange_token(ctx)
        assert exchange is not None
        try:
            order = await exchange.get(token, f"/api/orders/{order_id}")
        except ExchangeError as exc:
            if exc.status == 404:
                raise PageError(404, "No such order.", "Not found") from exc
            raise PageError(
                503, f"The exchange cannot be reached right now ({exc.detail})."
            ) from exc
        return render(ctx, "order.html", order=order)

    def account_page(ctx: Ctx, status: int = 200, notice: str = "", pw_error: str = "") -> Response:
        assert ctx.user is not None
        sessions = store.user_sessions(ctx.user.id)
        return render(
            ctx, "account.html", status, sessions=sessions, current=ctx.session.id_hash,
            codes_left=len(store.unused_recovery_codes(ctx.user.id)),
            events=store.audit_events(ctx.user.id, 20), reauth_ok=recent_reauth(ctx),
            notice=notice, pw_error=pw_error, min_password=MIN_PASSWORD,
        )  # fmt: skip

    # the signed-in user's own account: a member's and the owner's (same page, same routes)
    @app.get("/account")
    async def account(ctx: UserDep, notice: Annotated[str, Query(max_length=100)] = "") -> Response:
        return account_page(ctx, notice=notice)

    def recent_reauth(ctx: Ctx) -> bool:
        return time.time() - ctx.session.reauth_at <= settings.reauth_seconds

    def require_reauth(ctx: Ctx, next_path: str) -> None:
        if not recent_reauth(ctx):
            raise RedirectError(f"/reauth?next={quote(next_path)}")

    @app.post("/account/sessions/revoke")
    async def revoke(ctx: UserPostDep, session: Annotated[str, Form(max_length=64)]) -> Response:
        assert ctx.user is not None
        for row in store.user_sessions(ctx.user.id):
            if row.id_hash[:16] == session and store.delete_user_session(ctx.user.id, row.id_hash):
                store.audit("session_revoked", ctx.user.id, ctx.ip, row.id_hash[:16])
                break
        return redirect(ctx, "/account")

    @app.post("/account/recovery-codes")
    async def new_codes(ctx: UserPostDep) -> Response:
        assert ctx.user is not None
        require_reauth(ctx, "/account")
        codes = security.new_recovery_codes()
        store.replace_recovery_codes(ctx.user.id, [security.hash_recovery_code(c) for c in codes])
        store.audit("recovery_codes_replaced", ctx.user.id, ctx.ip)
        return render(ctx, "recovery_codes.html", codes=codes)

    @app.post("/account/totp/reset")
    async def totp_reset(ctx: UserPostDep) -> Response:
        assert ctx.user is not None
        require_reauth(ctx, "/account")
        store.set_totp_pending(ctx.user.id, security.new_totp_secret())
        store.audit("totp_reset_started", ctx.user.id, ctx.ip)
        return redirect(ctx, "/2fa/enrol")

    @app.post("/account/password")
    async def change_password(
        ctx: UserPostDep,
        current: Annotated[str, Form(max_length=1024)],
        new: Annotated[str, Form(max_length=1024)],
        repeat: Annotated[str, Form(max_length=1024)],
    ) -> Response:
        """A local account's new password: the current one and a recent TOTP re-auth; every
        other session of the account ends."""
        user = ctx.user
        assert user is not None
        if user.password_hash is None:
            raise PageError(404, "This account signs in with the shared login: no password here.")
        require_reauth(ctx, "/account")
        rate_limited(ctx, "password_change")
        refuse_locked(ctx, user)
        if not security.verify_secret(user.password_hash, current):
            if failed(ctx, user, "password_change_failed"):
                raise PageError(
                    423, "Too many wrong passwords: the account is locked.", "Account locked"
                )
            return account_page(ctx, 401, pw_error="The current password is wrong.")
        if len(new) < MIN_PASSWORD:
            return account_page(
                ctx, 422, pw_error=f"The new password needs {MIN_PASSWORD} characters."
            )
        if new != repeat:
            return account_page(ctx, 422, pw_error="The two new passwords differ.")
        store.set_password(user.id, security.hash_password(new))
        store.clear_failures(user.id)
        ended = store.end_other_sessions(user.id, ctx.session.id_hash)
        store.audit("password_changed", user.id, ctx.ip, f"{ended} other sessions ended")
        return redirect(ctx, "/account?notice=Password+changed.")

    @app.get("/reauth")
    async def reauth_page(ctx: UserDep, next: str = "/account") -> Response:
        return render(
            ctx, "totp.html", action="/reauth", heading="Confirm it is you",
            next=safe_next(next),
        )  # fmt: skip

    @app.post("/reauth")
    async def reauth_submit(
        ctx: UserPostDep,
        code: Annotated[str, Form(max_length=32)],
        next: Annotated[str, Form(max_length=300)] = "/account",
    ) -> Response:
        assert ctx.user is not None
        rate_limited(ctx, "reauth")
        if not fresh_code(ctx, code, "reauth_failed"):
            return render(
                ctx, "totp.html", 401, action="/reauth", heading="Confirm it is you",
                next=safe_next(next), error="Wrong or already used code.",
            )  # fmt: skip
        store.audit("reauth_ok", ctx.user.id, ctx.ip)
        return redirect(ctx, safe_next(next))

    def fresh_code(ctx: Ctx, code: str, event: str) -> bool:
        """A TOTP code typed now (re-authentication inline with the form it confirms); a wrong
        one counts towards the lock-out, which ends the session."""
        user = ctx.user
        assert user is not None
        refuse_locked(ctx, user)
        step = security.totp_step(user.totp_secret or "", code, user.totp_last_step)
        if step is None or not store.use_totp_step(user.id, step):
            if failed(ctx, user, event):
                raise PageError(
                    423, "Too many wrong codes: the account is locked.", "Account locked"
                )
            return False
        store.clear_failures(user.id)
        store.update_session(ctx.session.id_hash, reauth_at=time.time())
        return True

    async def withdraw_form(
        ctx: Ctx, token: str, status: int = 200, error: str = "", done: Any = None
    ) -> Response:
        assert exchange is not None
        try:
            policy = (await exchange.get(token, "/v1/withdrawals/policy"))["chains"]
            recent = (await exchange.get(token, "/v1/withdrawals", limit=10))["withdrawals"]
        except ExchangeError as exc:
            if exc.status == 404:
                raise PageError(404, "Withdrawals are not set up on this node.") from exc
            raise PageError(
                503, f"The exchange cannot be reached right now ({exc.detail})."
            ) from exc
        return render(
            ctx, "withdraw.html", status, policy=policy, recent=recent, error=error, done=done,
            idempotency_key=secrets.token_urlsafe(16),
        )  # fmt: skip

    @app.get("/wallet/withdraw")
    async def withdraw_page(ctx: MemberDep) -> Response:
        return await withdraw_form(ctx, await exchange_token(ctx))

    @app.post("/wallet/withdraw")
    async def withdraw_submit(
        ctx: MemberPostDep,
        chain: Annotated[str, Form(max_length=32)],
        address: Annotated[str, Form(max_length=128)],
        amount: Annotated[str, Form(max_length=40)],
        code: Annotated[str, Form(max_length=32)],
        idempotency_key: Annotated[str, Form(min_length=8, max_length=64)],
    ) -> Response:
        """A withdrawal, confirmed with a fresh TOTP code in the same form."""
        assert ctx.user is not None
        rate_limited(ctx, "withdraw")
        token = await exchange_token(ctx)
        assert exchange is not None
        try:
            policy = (await exchange.get(token, "/v1/withdrawals/policy"))["chains"]
            asset = policy[chain]["asset"] if chain in policy else ""
            # a typo in the amount does not spend the member's code
            units = parse_amount(amount, settings.asset_decimals.get(asset, 0))
        except ValueError as exc:
            return await withdraw_form(ctx, token, 422, str(exc))
        except ExchangeError as exc:
            raise PageError(503, f"The exchange cannot be reached ({exc.detail}).") from exc
        if not fresh_code(ctx, code, "withdrawal_code_failed"):
            return await withdraw_form(ctx, token, 401, "Wrong or already used code.")
        try:
            done = await exchange.post(
                token, "/v1/withdrawals",
                {"chain": chain, "address": address.strip(), "amount": units,
                 "idempotency_key": idempotency_key},
            )  # fmt: skip
        except ExchangeError as exc:
            if exc.status == 0 or exc.status >= 500:
                raise PageError(503, f"The exchange cannot be reached ({exc.detail}).") from exc
            return await withdraw_form(ctx, token, 422, exc.detail)
        store.audit(
            "withdrawal_requested", ctx.user.id, ctx.ip,
            f"#{done['id']} {done['amount']} {done['asset']} to {done['address']}",
        )  # fmt: skip
        return await withdraw_form(ctx, token, 201, done=done)

    @app.post("/logout")
    async def logout(ctx: CsrfDep) -> Response:
        store.delete_session(ctx.session.id_hash)
        if ctx.user is not None:
            store.audit("logout", ctx.user.id, ctx.ip)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(cookie_name, path="/", secure=settings.cookie_secure)
        return response

    from scnode_dashboard import owner

    app.include_router(
        owner.build_router(owner.Tools(render, redirect, fresh_code, settings, store))
    )
    # the exchange, mining and API-token pages (routers in their own modules)
    from scnode_dashboard import lightning, mining, tokens, trading

    app.state.pages = PageTools(render, redirect, exchange_token, fresh_code, exchange)
    for module in (trading, mining, tokens, lightning):
        app.include_router(module.build_router())
    return app


# verified against when a local username is unknown, so that answer takes as long as a
# wrong password
_DUMMY_HASH = security.hash_password("scnode-dashboard-unknown-user")
