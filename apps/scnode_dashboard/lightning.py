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

Paying an invoice (a withdrawal over Lightning, the exchange's ``/v1/lightning/payments``):
``/wallet/lightning/pay`` takes the bolt11; ``…/pay/quote`` shows what paying it reserves (amount,
the maximum routing fee, the total) with a confirm form carrying a fresh idempotency key and a
TOTP code field — the same fresh-code check as an on-chain withdrawal, made only after the
invoice passed the quote, so a wrong invoice does not spend the code. ``POST …/pay`` sends it
and redirects to ``/wallet/lightning/payments/{id}``, which shows the state until it is final
(``complete`` with the fee charged, or ``failed`` with the reason and the reserve released). A
form sent again with its key is the payment already made (no code asked, nothing new sent).
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
from scnode_dashboard.app import MemberDep, MemberPostDep, PageError, parse_amount
from scnode_dashboard.exchange import ExchangeClient, ExchangeError
from scnode_dashboard.pages import PageTools, tools, unavailable

NOT_CONFIGURED = "Lightning is not configured on this node."
SHOWN = 25  # invoices listed on the wallet page
# the exchange's words for an invoice, as the member reads them
STATES = {"unpaid": "unpaid", "credited": "paid", "expired": "expired"}
FINAL = ("complete", "failed")  # a payment's states after which nothing changes
Bolt11 = Annotated[str, Form(min_length=1, max_length=4096)]


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

    async def pay_page(
        ctx: Any,
        pages: PageTools,
        status: int = 200,
        error: str = "",
        quote: dict[str, Any] | None = None,
        bolt11: str = "",
    ) -> Response:
        token = await pages.exchange_token(ctx)
        try:
            policy = await pages.exchange.get(token, "/v1/lightning/payments/policy")
            recent = (await pages.exchange.get(token, "/v1/lightning/payments", limit=10))[
                "payments"
            ]
        except ExchangeError as exc:
            if not_configured(exc):
                return pages.render(ctx, "lightning_pay.html", configured=False)
            raise PageError(503, unavailable(exc)) from exc
        return pages.render(
            ctx, "lightning_pay.html", status, configured=True, policy=policy, recent=recent,
            error=error, quote=quote, bolt11=bolt11,
            idempotency_key=secrets.token_urlsafe(16) if quote else "",
        )  # fmt: skip

    async def quoted(pages: PageTools, token: str, bolt11: str) -> dict[str, Any]:
        """The exchange's quote (``ValueError`` with its reason when it refuses the invoice)."""
        try:
            found: dict[str, Any] = await pages.exchange.post(
                token, "/v1/lightning/payments/quote", {"bolt11": bolt11}
            )
        except ExchangeError as exc:
            if exc.status == 0 or (exc.status >= 500 and not not_configured(exc)):
                raise PageError(503, unavailable(exc)) from exc
            raise ValueError(NOT_CONFIGURED if not_configured(exc) else exc.detail) from exc
        return found

    @router.get("/wallet/lightning/pay")
    async def pay_form(ctx: MemberDep, request: Request) -> Response:
        return await pay_page(ctx, tools(request))

    @router.post("/wallet/lightning/pay/quote")
    async def pay_quote(ctx: MemberPostDep, request: Request, bolt11: Bolt11) -> Response:
        pages = tools(request)
        token = await pages.exchange_token(ctx)
        invoice = bolt11.strip()
        try:
            quote = await quoted(pages, token, invoice)
        except ValueError as exc:
            return await pay_page(ctx, pages, 422, str(exc), bolt11=invoice)
        return await pay_page(ctx, pages, quote=quote, bolt11=invoice)

    @router.post("/wallet/lightning/pay")
    async def pay(
        ctx: MemberPostDep,
        request: Request,
        bolt11: Bolt11,
        code: Annotated[str, Form(max_length=32)],
        idempotency_key: Annotated[str, Form(min_length=8, max_length=64)],
    ) -> Response:
        """A payment, confirmed with a fresh TOTP code in the same form."""
        pages = tools(request)
        token = await pages.exchange_token(ctx)
        invoice = bolt11.strip()
        try:
            recent = (await pages.exchange.get(token, "/v1/lightning/payments", limit=50))[
                "payments"
            ]
        except ExchangeError as exc:
            if not_configured(exc):
                return await pay_page(ctx, pages)
            raise PageError(503, unavailable(exc)) from exc
        made = next((p for p in recent if p["idempotency_key"] == idempotency_key), None)
        if made is not None:  # this form was sent before: its payment, nothing new
            return pages.redirect(ctx, f"/wallet/lightning/payments/{made['id']}")
        try:
            quote = await quoted(pages, token, invoice)
        except ValueError as exc:
            return await pay_page(ctx, pages, 422, str(exc), bolt11=invoice)
        if not pages.fresh_code(ctx, code, "lightning_payment_code_failed"):
            return await pay_page(
                ctx, pages, 401, "Wrong or already used code.", quote=quote, bolt11=invoice
            )
        try:
            done = await pages.exchange.post(
                token, "/v1/lightning/payments",
                {"bolt11": invoice, "idempotency_key": idempotency_key},
            )  # fmt: skip
        except ExchangeError as exc:
            if exc.status == 0 or (exc.status >= 500 and not not_configured(exc)):
                raise PageError(503, unavailable(exc)) from exc
            return await pay_page(ctx, pages, 422, exc.detail, bolt11=invoice)
        assert ctx.user is not None
        store = request.app.state.store
        store.audit(
            "lightning_payment_requested", ctx.user.id, ctx.ip,
            f"#{done['id']} {done['amount_sats']} sats (max fee {done['max_fee_sats']}) "
            f"to {done['destination']}",
        )  # fmt: skip
        return pages.redirect(ctx, f"/wallet/lightning/payments/{done['id']}")

    @router.get("/wallet/lightning/payments/{payment_id}")
    async def payment_page(payment_id: int, ctx: MemberDep, request: Request) -> Response:
        pages = tools(request)
        token = await pages.exchange_token(ctx)
        try:
            payment = await pages.exchange.get(token, f"/v1/lightning/payments/{payment_id}")
        except ExchangeError as exc:
            if exc.status in (404, 422):
                raise PageError(404, "No such payment.", "Not found") from exc
            raise PageError(503, unavailable(exc)) from exc
        return pages.render(
            ctx, "lightning_payment.html", payment=payment, final=payment["state"] in FINAL
        )

    return router
