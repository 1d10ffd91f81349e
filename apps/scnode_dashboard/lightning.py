"""Lightning on the wallet page: the member's deposit invoices (LaaS, the exchange's
``/v1/lightning/invoices``).

The wallet page (``app.py``) shows ``section()``: a form for a new invoice (amount in sats and an
optional memo), the member's invoices with their state and the sats credited, and — after the
form was sent — the new invoice as text and QR code with its expiry. Each render of the form
carries a fresh idempotency key, so a double submit of one form makes one invoice (the exchange
answers the same invoice for the same key). The form posts to ``/wallet/lightning/invoices``,
which redirects back to the wallet (post/redirect/get: reloading the page sends nothing).

An exchange without Lightning answers 503 (404 before it had the routes): the section then
says Lightning is not configured on this node instead of failing the page.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from scnode_dashboard import security
from scnode_dashboard.app import MemberPostDep, parse_amount
from scnode_dashboard.exchange import ExchangeClient, ExchangeError
from scnode_dashboard.pages import tools

NOT_CONFIGURED = "Lightning is not configured on this node."
SHOWN = 25  # invoices listed on the wallet page
# the exchange's words for an invoice, as the member reads them
STATES = {"unpaid": "unpaid", "credited": "paid", "expired": "expired"}


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:  # the exchange stores UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def not_configured(exc: ExchangeError) -> bool:
    """The exchange has no Lightning (503 saying so) or predates its routes (404)."""
    return exc.status == 404 or (exc.status == 503 and "not configured" in exc.detail)


def invoice_view(row: dict[str, Any], now: float) -> dict[str, Any]:
    """An exchange invoice as the page shows it (state in the member's words, times as epochs)."""
    expires = _epoch(row.get("expires_at"))
    state = str(row.get("state", "unpaid"))
    if state == "unpaid" and expires is not None and expires <= now:
        state = "expired"  # the exchange marks it later; the member sees it now
    return {
        **row,
        "status": STATES.get(state, state),
        "expires": expires,
        "created": _epoch(row.get("created_at")),
        "credited": _epoch(row.get("credited_at")),
    }


async def section(
    exchange: ExchangeClient, token: str, show: str = "", error: str = ""
) -> dict[str, Any]:
    """The wallet page's Lightning section: ``configured``, ``error``, ``invoices``, ``shown``
    (the invoice ``show`` names, with its QR code, while it can still be paid) and a fresh
    ``idempotency_key`` for this render's form."""
    try:
        rows = (await exchange.get(token, "/v1/lightning/invoices", limit=SHOWN))["invoices"]
    except ExchangeError as exc:
        if not_configured(exc):
            return {"configured": False, "error": NOT_CONFIGURED, "invoices": [], "shown": None}
        return {
            "configured": True,
            "error": f"Lightning is not available right now ({exc.detail}).",
            "invoices": [],
            "shown": None,
            "idempotency_key": secrets.token_urlsafe(16),
        }
    now = time.time()
    invoices = [invoice_view(r, now) for r in rows]
    shown = next((i for i in invoices if show and i["payment_hash"] == show), None)
    if shown is not None and shown["status"] == "unpaid":
        shown = {**shown, "qr": security.qr_svg(f"lightning:{shown['bolt11'].upper()}")}
    return {
        "configured": True,
        "error": error,
        "invoices": invoices,
        "shown": shown,
        "idempotency_key": secrets.token_urlsafe(16),
    }


def build_router() -> APIRouter:
    """``POST /wallet/lightning/invoices``: a new deposit invoice, back to the wallet."""
    router = APIRouter()

    def back(**query: str) -> str:
        return f"/wallet?{urlencode(query)}#lightning"

    @router.post("/wallet/lightning/invoices")
    async def new_invoice(
        ctx: MemberPostDep,
        request: Request,
        amount: Annotated[str, Form(max_length=40)],
        idempotency_key: Annotated[str, Form(min_length=8, max_length=64)],
        memo: Annotated[str, Form(max_length=200)] = "",
    ) -> Response:
        pages = tools(request)
        try:
            sats = parse_amount(amount, 0)
        except ValueError as exc:
            return pages.redirect(ctx, back(ln_error=f"{exc} (whole sats)"))
        token = await pages.exchange_token(ctx)
        try:
            made = await pages.exchange.post(
                token,
                "/v1/lightning/invoices",
                {"amount_sats": sats, "idempotency_key": idempotency_key,
                 "description": memo.strip()},
            )  # fmt: skip
        except ExchangeError as exc:
            if not_configured(exc):
                return pages.redirect(ctx, back(ln_error=NOT_CONFIGURED))
            return pages.redirect(ctx, back(ln_error=f"No invoice was made: {exc.detail}"))
        return pages.redirect(ctx, back(invoice=str(made["payment_hash"])))

    return router
