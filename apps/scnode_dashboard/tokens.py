"""``/account/tokens``: the member's API tokens for the Satoshiware mobile app (and scripts).

The tokens live in the exchange (``/api/tokens``: named, scoped ``read``/``trade``/``withdraw``,
stored as SHA-256, revocable at once); the dashboard asks for them with the member's session
token, which an API token can never replace. Making one needs a **fresh TOTP code in the same
form** (as a withdrawal does: checked after the rest of the form, each 30 s step once, wrong
codes count towards the lock-out). The token is shown once, on the answer page, and never
stored by the dashboard. Every creation and revocation lands in the audit table.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from scnode_dashboard.app import MemberDep, MemberPostDep, PageError
from scnode_dashboard.exchange import ExchangeError
from scnode_dashboard.pages import tools, unavailable
from scnode_dashboard.store import Store

SCOPES = {
    "read": "Read balances, orders, history and market data",
    "trade": "Place and cancel orders",
    "withdraw": "Withdraw and every other change (Lightning, deposit addresses, workers)",
}


def build_router() -> APIRouter:
    """List, create (with a fresh TOTP code) and revoke API tokens."""
    router = APIRouter()

    async def page(ctx: Any, request: Request, status: int = 200, **extra: Any) -> Response:
        pages = tools(request)
        token = await pages.exchange_token(ctx)
        try:
            listed = (await pages.exchange.get(token, "/api/tokens"))["tokens"]
        except ExchangeError as exc:
            raise PageError(503, unavailable(exc)) from exc
        return pages.render(
            ctx, "tokens.html", status, tokens=listed, scopes=SCOPES,
            form=extra.pop("form", {}), **extra,
        )  # fmt: skip

    @router.get("/account/tokens")
    async def tokens(ctx: MemberDep, request: Request) -> Response:
        return await page(ctx, request)

    @router.post("/account/tokens")
    async def create(
        ctx: MemberPostDep,
        request: Request,
        name: Annotated[str, Form(max_length=64)],
        code: Annotated[str, Form(max_length=32)],
        scopes: Annotated[list[str], Form()] = [],  # noqa: B006  (FastAPI copies the default)
        expires_in_days: Annotated[str, Form(max_length=8)] = "",
    ) -> Response:
        assert ctx.user is not None
        pages = tools(request)
        store: Store = request.app.state.store
        form = {"name": name, "scopes": scopes, "expires_in_days": expires_in_days}
        chosen = [s for s in SCOPES if s in scopes]
        days = expires_in_days.strip()
        if not name.strip() or not chosen or len(chosen) != len(set(scopes)):
            return await page(
                ctx, request, 422, error="Give a name and pick scopes from the list.", form=form
            )
        if days and (not days.isdigit() or not 1 <= int(days) <= 3650):
            return await page(
                ctx, request, 422, error="Expiry: 1 to 3650 days, or empty for none.", form=form
            )
        if not pages.fresh_code(ctx, code, "token_code_failed"):
            return await page(ctx, request, 401, error="Wrong or already used code.", form=form)
        body: dict[str, Any] = {"name": name.strip(), "scopes": chosen}
        if days:
            body["expires_in_days"] = int(days)
        token = await pages.exchange_token(ctx)
        try:
            made = await pages.exchange.post(token, "/api/tokens", body)
        except ExchangeError as exc:
            if exc.status == 0 or exc.status >= 500:
                raise PageError(503, unavailable(exc)) from exc
            return await page(ctx, request, 422, error=f"Not created: {exc.detail}", form=form)
        store.audit(
            "api_token_created", ctx.user.id, ctx.ip,
            f"#{made['id']} {made['name']!r} {' '.join(made['scopes'])}",
        )  # fmt: skip
        return await page(ctx, request, 201, made=made)

    @router.post("/account/tokens/{token_id}/revoke")
    async def revoke(token_id: int, ctx: MemberPostDep, request: Request) -> Response:
        assert ctx.user is not None
        pages = tools(request)
        store: Store = request.app.state.store
        token = await pages.exchange_token(ctx)
        try:
            await pages.exchange.delete(token, f"/api/tokens/{token_id}")
        except ExchangeError as exc:
            if exc.status == 404:
                raise PageError(404, "No such token.", "Not found") from exc
            raise PageError(503, unavailable(exc)) from exc
        store.audit("api_token_revoked", ctx.user.id, ctx.ip, f"#{token_id}")
        return pages.redirect(ctx, "/account/tokens")

    return router
