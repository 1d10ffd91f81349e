"""The owner dashboard: ``/owner/...`` pages for a signed-in user with the ``owner`` role
(local account + TOTP, ``add-local-user --owner``). Anyone else gets 404 — a member cannot
even learn which owner pages exist.

The pages call the exchange's owner API with the dashboard's owner-scoped key
(``exchange_owner_api_key``; never shown in a page or a log line) and name the signed-in owner
in ``X-Acting-Owner``, so every audit row on the exchange reads ``owner:<key> by <owner>``.
Every action carries a reason; every action that moves money (balance adjustments, approving
or refusing a withdrawal, settling a suspense alert) also carries a fresh TOTP code in its own
form (the same check as a member's withdrawal). Each action lands in the dashboard's audit
table too, with the owner's user id.

Pages: members (list, invite, detail with balances, freeze/unfreeze, adjust, worker names),
funds (withdrawals waiting for approval, the suspense queue with its reorg alerts and unknown
workers, the solvency view), components (``components.py``) and the audit log (the exchange's
and the dashboard's, paged and filtered).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import httpx
from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from scnode_dashboard import components
from scnode_dashboard.app import CsrfDep, Ctx, CtxDep, PageError, RedirectError, parse_amount
from scnode_dashboard.exchange import ExchangeError
from scnode_dashboard.settings import DashboardSettings
from scnode_dashboard.store import FULL, Store, User

PAGE = 50
Reason = Annotated[str, Form(min_length=3, max_length=500)]
Code = Annotated[str, Form(max_length=32)]
Pool = Annotated[str, Form(min_length=1, max_length=64)]
Worker = Annotated[str, Form(min_length=1, max_length=128)]


def _owner(ctx: Ctx) -> Ctx:
    if ctx.session.stage != FULL or ctx.user is None:
        raise RedirectError("/login")
    if not ctx.user.is_owner:
        raise PageError(404, "There is no such page.", "Not found")
    return ctx


async def owner_page(ctx: CtxDep) -> Ctx:
    return _owner(ctx)


async def owner_post(ctx: CsrfDep) -> Ctx:
    return _owner(ctx)


OwnerDep = Annotated[Ctx, Depends(owner_page)]
OwnerPostDep = Annotated[Ctx, Depends(owner_post)]


class OwnerExchange:
    """The exchange's owner API for one signed-in owner (one request's client)."""

    def __init__(self, settings: DashboardSettings, owner: User) -> None:
        keys = settings.exchange_owner_key
        if keys is None:
            raise PageError(
                503,
                "The owner pages need the exchange's owner key "
                "(SCNODE_DASHBOARD_EXCHANGE_OWNER_API_KEY or ..._FILE).",
                "Not configured",
            )
        self._keys = keys
        self._http = httpx.AsyncClient(
            base_url=settings.exchange_url,
            timeout=10.0,
            headers={"X-Acting-Owner": owner.username},
            verify=components.tls_context(),
        )

    async def __aenter__(self) -> OwnerExchange:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        # the key file's key on every call; a 401 re-reads it once (the rotation may have
        # rewritten it within one tick of the file clock) and repeats the call with a new key
        key = self._keys.current()
        reply = await self._send(method, path, key, kwargs)
        if reply.status_code == 401 and (fresh := self._keys.refresh()) != key:
            reply = await self._send(method, path, fresh, kwargs)
        if reply.status_code >= 400:
            try:
                body = reply.json()
                detail = body.get("detail", reply.text) if isinstance(body, dict) else reply.text
            except ValueError:
                detail = reply.text[:200]
            raise ExchangeError(reply.status_code, str(detail)[:300])
        return reply.json() if reply.content else None

    async def _send(
        self, method: str, path: str, key: str, kwargs: dict[str, Any]
    ) -> httpx.Response:
        try:
            return await self._http.request(method, path, headers={"X-API-Key": key}, **kwargs)
        except httpx.HTTPError as exc:
            raise ExchangeError(0, f"the exchange is not reachable: {type(exc).__name__}") from exc

    async def get(self, path: str, **params: Any) -> Any:
        return await self.call("GET", path, params={k: v for k, v in params.items() if v})

    async def optional(self, path: str, **params: Any) -> tuple[Any, str]:
        """A section's data, or why it is missing ('not set up' for a 404/503 route)."""
        try:
            return await self.get(path, **params), ""
        except ExchangeError as exc:
            if exc.status in (404, 503):
                return None, f"not set up on this exchange ({exc.detail})"
            if exc.status == 0:
                return None, exc.detail
            raise


@dataclass
class Tools:
    """What the pages borrow from ``create_app``: rendering, redirects, the fresh-code check."""

    render: Callable[..., HTMLResponse]
    redirect: Callable[[Ctx | None, str], RedirectResponse]
    fresh_code: Callable[[Ctx, str, str], bool]
    settings: DashboardSettings
    store: Store


def build_router(tools: Tools) -> APIRouter:
    """The ``/owner`` pages."""
    router = APIRouter(prefix="/owner", include_in_schema=False)
    settings, store = tools.settings, tools.store
    decimals = settings.asset_decimals

    def who(ctx: Ctx) -> User:
        assert ctx.user is not None
        return ctx.user

    def audit(ctx: Ctx, event: str, detail: str) -> None:
        store.audit(event, who(ctx).id, ctx.ip, detail)

    def failed(exc: ExchangeError) -> PageError:
        if exc.status == 0 or exc.status >= 500:
            return PageError(503, f"The exchange cannot be reached right now ({exc.detail}).")
        if exc.status == 404:
            return PageError(404, f"Not found: {exc.detail}", "Not found")
        return PageError(409 if exc.status == 409 else 422, exc.detail)

    def back(ctx: Ctx, path: str, notice: str = "", error: str = "") -> RedirectResponse:
        query = urlencode({k: v for k, v in (("notice", notice), ("error", error)) if v})
        return tools.redirect(ctx, f"{path}?{query}" if query else path)

    def code_ok(ctx: Ctx, code: str, what: str) -> bool:
        ok = tools.fresh_code(ctx, code, "owner_code_failed")
        if not ok:
            audit(ctx, "owner_code_failed", what)
        return ok

    # ------------------------------------------------------------------ members
    @router.get("")
    async def home(ctx: OwnerDep) -> Response:
        return tools.redirect(ctx, "/owner/members")

    @router.get("/members")
    async def members(
        ctx: OwnerDep, before: int | None = None, notice: str = "", error: str = ""
    ) -> Response:
        async with OwnerExchange(settings, who(ctx)) as ex:
            try:
                rows = await ex.get("/api/owner/members", before_id=before, limit=PAGE)
            except ExchangeError as exc:
                raise failed(exc) from exc
        more = rows[-1]["id"] if len(rows) == PAGE else None
        return tools.render(
            ctx, "owner_members.html", members=rows, more=more, notice=notice, error=error
        )

    @router.post("/members")
    async def invite(
        ctx: OwnerPostDep,
        handle: Annotated[str, Form(min_length=1, max_length=128)],
        reason: Reason,
    ) -> Response:
        async with OwnerExchange(settings, who(ctx)) as ex:
            try:
                made = await ex.call(
                    "POST", "/api/owner/members", json={"handle": handle.strip(), "reason": reason}
                )
            except ExchangeError as exc:
                if exc.status in (409, 422):
                    return back(ctx, "/owner/members", error=f"Not added: {exc.detail}")
                raise failed(exc) from exc
        audit(ctx, "owner_member_invited", f"{made['handle']} (#{made['id']}): {reason}")
        return back(
            ctx, f"/owner/members/{made['id']}",
            notice=f"Member {made['handle']} added: they can now sign in with that name.",
        )  # fmt: skip

    @router.get("/members/{member_id}")
    async def member(member_id: int, ctx: OwnerDep, notice: str = "", error: str = "") -> Response:
        async with OwnerExchange(settings, who(ctx)) as ex:
            try:
                row = await ex.get(f"/api/owner/members/{member_id}")
                history = await ex.get("/api/owner/audit", member_id=member_id, limit=20)
            except ExchangeError as exc:
                raise failed(exc) from exc
            workers, workers_note = await ex.optional("/v1/owner/mining/workers")
            withdrawals, withdrawals_note = await ex.optional(
                "/v1/owner/withdrawals", member_id=member_id, limit=10
            )
        mine = [w for w in (workers or {}).get("workers", []) if w.get("member_id") == member_id]
        return tools.render(
            ctx, "owner_member.html", m=row, history=history["items"], workers=mine,
            workers_note=workers_note, withdrawals=(withdrawals or {}).get("withdrawals", []),
            withdrawals_note=withdrawals_note, assets=sorted(decimals),
            idempotency_key=secrets.token_urlsafe(16), notice=notice, error=error,
        )  # fmt: skip

    async def set_frozen(ctx: Ctx, member_id: int, reason: str, frozen: bool) -> Response:
        action = "freeze" if frozen else "unfreeze"
        async with OwnerExchange(settings, who(ctx)) as ex:
            try:
                row = await ex.call(
                    "POST", f"/api/owner/members/{member_id}/{action}", json={"reason": reason}
                )
            except ExchangeError as exc:
                raise failed(exc) from exc
        ended = 0
        user = store.user_by_handle(str(row["handle"]))
        if frozen and user is not None:
            ended = store.end_user_sessions(user.id)  # signed out now, refused at sign-in
        audit(ctx, f"owner_{action}", f"{row['handle']} (#{member_id}): {reason}")
        text = (
            f"{row['handle']} frozen; {ended} dashboard session(s) ended."
            if frozen
            else (f"{row['handle']} unfrozen.")
        )
        return back(ctx, f"/owner/members/{member_id}", notice=text)

    @router.post("/members/{member_id}/freeze")
    async def freeze(member_id: int, ctx: OwnerPostDep, reason: Reason) -> Response:
        return await set_frozen(ctx, member_id, reason, True)

    @router.post("/members/{member_id}/unfreeze")
    async def unfreeze(member_id: int, ctx: OwnerPostDep, reason: Reason) -> Response:
        return await set_frozen(ctx, member_id, reason, False)

    @router.post("/members/{member_id}/adjust")
    async def adjust(
        member_id: int,
        ctx: OwnerPostDep,
        asset: Annotated[str, Form(max_length=16)],
        direction: Annotated[str, Form(pattern="^(credit|debit)$")],
        amount: Annotated[str, Form(max_length=40)],
        reason: Reason,
        code: Code,
        idempotency_key: Annotated[str, Form(min_length=8, max_length=64)],
    ) -> Response:
        """A balance adjustment (a journal entry against owner equity), with a fresh code."""
        path = f"/owner/members/{member_id}"
        if asset not in decimals:
            return back(ctx, path, error=f"Unknown asset {asset!r}.")
        try:
            units = parse_amount(amount, decimals[asset])
        except ValueError as exc:
            return back(ctx, path, error=str(exc))  # a typo does not spend the code
        if not code_ok(ctx, code, f"adjust #{member_id}"):
            return back(ctx, path, error="Wrong or already used code: nothing was changed.")
        signed = units if direction == "credit" else -units
        async with OwnerExchange(settings, who(ctx)) as ex:
            try:
                done = await ex.call(
                    "POST", f"/api/owner/members/{member_id}/adjustments",
                    json={"asset": asset, "amount": signed, "reason": reason,
                          "idempotency_key": f"dash-{idempotency_key}"},
                )  # fmt: skip
            except ExchangeError as exc:
                if exc.status in (409, 422):
                    return back(ctx, path, error=f"Refused by the exchange: {exc.detail}")
                raise failed(exc) from exc
        audit(
            ctx, "owner_adjust", f"#{member_id} {signed} {asset} entry {done['entry_id']}: {reason}"
        )
        shown = f"{amount.strip()} {asset}"
        text = f"{direction.capitalize()} of {shown} booked (entry {done['entry_id']})."
        if not done.get("created", True):
            text = f"Already booked (entry {done['entry_id']}): nothing done twice."
        return back(ctx, path, notice=text)

    async def assign(
        ctx: Ctx, member_id: int, pool: str, worker: str, reason: str, path: str
    ) -> Response:
        async with OwnerExchange(settings, who(ctx)) as ex:
            try:
                await ex.call(
                    "PUT", f"/v1/owner/mining/workers/{quote(pool, safe='')}/{quote(worker)}",
                    json={"member_id": member_id, "reason": reason},
                )  # fmt: skip
            except ExchangeError as exc:
                if exc.status in (404, 409, 422):
                    return back(ctx, path, error=f"Refused by the exchange: {exc.detail}")
                raise failed(exc) from exc
        audit(ctx, "owner_worker_assigned", f"{pool}/{worker} -> #{member_id}: {reason}")
        return back(ctx, path, notice=f"Worker {worker} on {pool} now belongs to #{member_id}.")

    @router.post("/members/{member_id}/workers")
    async def member_worker(
        member_id: int, ctx: OwnerPostDep, pool: Pool, worker: Worker, reason: Reason
    ) -> Response:
        return await assign(ctx, member_id, pool, worker, reason, f"/owner/members/{member_id}")

    @router.post("/suspense/workers")
    async def unknown_worker(
        ctx: OwnerPostDep,
        member_id: Annotated[int, Form(gt=0)],
        pool: Pool,
        worker: Worker,
        reason: Reason,
    ) -> Response:
        return await assign(ctx, member_id, pool, worker, reason, "/owner/funds")

    # -------------------------------------------------------------------- funds
    @router.get("/funds")
    async def funds(ctx: OwnerDep, notice: str = "", error: str = "") -> Response:
        async with OwnerExchange(settings, who(ctx)) as ex:
            try:
                waiting, waiting_note = await ex.optional(
                    "/v1/owner/withdrawals", state="awaiting_approval", limit=100
                )
                recent, _ = await ex.optional("/v1/owner/withdrawals", limit=15)
                solvency, solvency_note = await ex.optional("/api/owner/solvency")
                suspense, suspense_note = await ex.optional("/v1/owner/deposits/suspense")
                alerts, _ = await ex.optional("/v1/owner/deposits/alerts")
                unknown, unknown_note = await ex.optional("/v1/owner/mining/unknown-workers")
                members = await ex.get("/api/owner/members", limit=500)
            except ExchangeError as exc:
                raise failed(exc) from exc
        return tools.render(
            ctx, "owner_funds.html",
            waiting=(waiting or {}).get("withdrawals", []), waiting_note=waiting_note,
            recent=(recent or {}).get("withdrawals", []),
            solvency=solvency, solvency_note=solvency_note,
            suspense=(suspense or {}).get("suspense", {}), suspense_note=suspense_note,
            alerts=(alerts or {}).get("alerts", []),
            unknown=(unknown or {}).get("unknown_workers", []), unknown_note=unknown_note,
            handles={m["id"]: m["handle"] for m in members}, notice=notice, error=error,
        )  # fmt: skip

    async def decide(ctx: Ctx, withdrawal_id: int, verb: str, body: Any, reason: str) -> Response:
        async with OwnerExchange(settings, who(ctx)) as ex:
            try:
                done = await ex.call(
                    "POST", f"/v1/owner/withdrawals/{withdrawal_id}/{verb}", json=body
                )
            except ExchangeError as exc:
                if exc.status in (404, 409, 422):
                    return back(ctx, "/owner/funds", error=f"Refused by the exchange: {exc.detail}")
                raise failed(exc) from exc
        audit(
            ctx, f"owner_withdrawal_{verb}",
            f"#{withdrawal_id} {done['amount']} {done['asset']} of member #{done['member_id']}"
            f" -> {done['state']}: {reason}",
        )  # fmt: skip
        return back(ctx, "/owner/funds", notice=f"Withdrawal #{withdrawal_id}: {done['state']}.")

    @router.post("/withdrawals/{withdrawal_id}/approve")
    async def approve(
        withdrawal_id: int, ctx: OwnerPostDep, reason: Reason, code: Code
    ) -> Response:
        if not code_ok(ctx, code, f"approve withdrawal #{withdrawal_id}"):
            return back(ctx, "/owner/funds", error="Wrong or already used code: not approved.")
        return await decide(ctx, withdrawal_id, "approve", None, reason)

    @router.post("/withdrawals/{withdrawal_id}/reject")
    async def reject(withdrawal_id: int, ctx: OwnerPostDep, reason: Reason, code: Code) -> Response:
        if not code_ok(ctx, code, f"reject withdrawal #{withdrawal_id}"):
            return back(ctx, "/owner/funds", error="Wrong or already used code: not refused.")
        return await decide(ctx, withdrawal_id, "reject", {"reason": reason}, reason)

    @router.post("/suspense/alerts/{alert_id}")
    async def resolve(
        alert_id: int,
        ctx: OwnerPostDep,
        action: Annotated[str, Form(pattern="^(recredit|write_off)$")],
        reason: Reason,
        code: Code,
    ) -> Response:
        if not code_ok(ctx, code, f"suspense alert #{alert_id}"):
            return back(ctx, "/owner/funds", error="Wrong or already used code: nothing changed.")
        async with OwnerExchange(settings, who(ctx)) as ex:
            try:
                await ex.call(
                    "POST", f"/v1/owner/deposits/alerts/{alert_id}/resolve",
                    json={"action": action, "reason": reason},
                )  # fmt: skip
            except ExchangeError as exc:
                if exc.status in (404, 409, 422):
                    return back(ctx, "/owner/funds", error=f"Refused by the exchange: {exc.detail}")
                raise failed(exc) from exc
        audit(ctx, "owner_suspense_resolved", f"alert #{alert_id} {action}: {reason}")
        return back(ctx, "/owner/funds", notice=f"Alert #{alert_id} settled ({action}).")

    # --------------------------------------------------------------- components
    @router.get("/components")
    async def components_page(ctx: OwnerDep) -> Response:
        found, error = await components.survey(
            settings.exchange_url, settings.components_file, settings.backup_dir,
            settings.backup_max_age_hours, settings.api_key_files,
            settings.api_key_max_age_days,
        )  # fmt: skip
        return tools.render(ctx, "owner_components.html", components=found, error=error)

    # -------------------------------------------------------------------- audit
    @router.get("/audit")
    async def audit_page(
        ctx: OwnerDep,
        source: str = "exchange",
        member: str = "",
        event: str = "",
        before: int | None = None,
    ) -> Response:
        member, event = member.strip()[:128], event.strip()[:32]
        rows: list[dict[str, Any]] = []
        more: int | None = None
        note = ""
        if source == "dashboard":
            user_id = None
            if member:
                found = store.user_by_handle(member) or store.local_user(member)
                user_id = found.id if found else -1
            page = store.audit_page(event or None, user_id, before, PAGE)
            rows = [
                {"id": e.id, "time": e.ts, "who": name or "", "event": e.event,
                 "detail": f"{e.detail} [{e.ip}]".strip()}
                for e, name in page
            ]  # fmt: skip
            more = page[-1][0].id if len(page) == PAGE else None
        else:
            source = "exchange"
            async with OwnerExchange(settings, who(ctx)) as ex:
                try:
                    member_id = None
                    if member:
                        listed = await ex.get("/api/owner/members", limit=500)
                        ids = [m["id"] for m in listed if m["handle"] == member]
                        member_id = ids[0] if ids else None
                        note = "" if ids else f"No member {member!r}."
                    if not note:
                        got = await ex.get(
                            "/api/owner/audit", member_id=member_id, action=event or None,
                            before_id=before, limit=PAGE,
                        )  # fmt: skip
                        rows = [
                            {"id": r["id"], "time": r["time"], "who": r["actor"],
                             "event": r["action"],
                             "detail": f"member #{r['member_id']}: {r['reason']}"
                             + (f" {r['details']}" if r["details"] else "")}
                            for r in got["items"]
                        ]  # fmt: skip
                        more = got["next_before_id"]
                except ExchangeError as exc:
                    raise failed(exc) from exc
        query = urlencode({"source": source, "member": member, "event": event})
        return tools.render(
            ctx, "owner_audit.html", rows=rows, more=more, source=source, member=member,
            event=event, note=note, query=query,
        )  # fmt: skip

    return router
