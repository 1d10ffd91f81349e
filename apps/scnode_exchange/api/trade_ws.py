"""``/ws/trade``: order entry over one WebSocket per trading client.

Authenticated at connect like the member routes (``Authorization: Bearer <token>``; the
session cookie only with a same-origin ``Origin`` header, the WebSocket form of the CSRF
rule). Each text message is one command::

    {"op": "place", "client_id": 7, "side": "buy", "price": 100, "quantity": 1, ...}
    {"op": "cancel", "client_id": 8, "order_id": 42}

with the fields of ``POST /api/orders`` for ``place``. Each command is answered with one
message carrying the same ``op`` and ``client_id``, ``ok`` and either ``order`` or ``error``
(a short code) + ``detail``. A ``place`` is answered **only after the group-commit batch
holding it committed** (the same ``Runtime.place`` as the REST route), so an ``ok`` is durable;
commands may be pipelined (answers can arrive out of order: match them by ``client_id``).
The REST routes' per-member rate limiter applies to every command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect, status
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from scnode_exchange.api.auth import SESSION_COOKIE, MemberPrincipal, bearer_token, member_from
from scnode_exchange.api.member import OrderIn, placed_json
from scnode_exchange.api.runtime import Runtime, TooManyOpenOrdersError, runtime
from scnode_exchange.ledger import (
    InsufficientFundsError,
    LedgerError,
    MemberFrozenError,
    UnknownAccountError,
)
from scnode_exchange.matching import Cancelled
from scnode_exchange.trading.service import OrderNotFoundError

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 1024  # unanswered commands per connection
MAX_MESSAGE = 4096  # bytes of one command
_ORDER_FIELDS = set(OrderIn.model_fields)


class CommandError(Exception):
    """A command refused before it reached the exchange: ``code`` + ``detail``."""

    def __init__(self, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.extra = extra


def ws_member(ws: WebSocket) -> MemberPrincipal:
    """The member of a WebSocket handshake. A browser sends the session cookie with any
    site's WebSocket, so a cookie counts only when ``Origin`` is this host."""
    if bearer_token(ws) is None and ws.cookies.get(SESSION_COOKIE):
        origin = ws.headers.get("origin")
        if origin is None or urlsplit(origin).netloc != ws.headers.get("host"):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "cookie sessions need a same-origin Origin header"
            )
    return member_from(ws)


def error_of(exc: BaseException) -> tuple[str, str]:
    """``(code, detail)`` of a refused or failed command (never a stack trace)."""
    if isinstance(exc, CommandError):
        return exc.code, exc.detail
    if isinstance(exc, HTTPException):
        code = "rate_limited" if exc.status_code == 429 else "refused"
        return code, str(exc.detail)
    known: tuple[tuple[type[BaseException], str], ...] = (
        (OrderNotFoundError, "not_found"),
        (UnknownAccountError, "not_found"),
        (TooManyOpenOrdersError, "too_many_open_orders"),
        (InsufficientFundsError, "insufficient_funds"),
        (MemberFrozenError, "frozen"),
        (LedgerError, "refused"),
        (ValueError, "invalid"),
    )
    for kind, code in known:
        if isinstance(exc, kind):
            return code, str(exc)
    if isinstance(exc, OperationalError):
        return "busy", "database busy, nothing committed: retry"
    log.error("order command failed", exc_info=exc)
    return "failed", "internal error, nothing committed"


def _parse(raw: str | bytes | None) -> dict[str, Any]:
    if raw is None:
        raise CommandError("invalid", "send commands as JSON text messages")
    if len(raw) > MAX_MESSAGE:
        raise CommandError("invalid", f"a command is at most {MAX_MESSAGE} bytes")
    try:
        message = json.loads(raw)
    except ValueError:
        raise CommandError("invalid", "not JSON") from None
    if not isinstance(message, dict):
        raise CommandError("invalid", "a command is a JSON object")
    client_id = message.get("client_id")
    if not (client_id is None or isinstance(client_id, int | str)) or (
        isinstance(client_id, str) and len(client_id) > 64
    ):
        raise CommandError("invalid", "client_id: an integer or a string of ≤ 64 characters")
    return message


async def _place(rt: Runtime, member: MemberPrincipal, message: dict[str, Any]) -> dict[str, Any]:
    extra = set(message) - _ORDER_FIELDS - {"op", "client_id"}
    if extra:
        raise CommandError("invalid", f"unknown fields: {', '.join(sorted(extra))}")
    try:
        body = OrderIn.model_validate({k: v for k, v in message.items() if k in _ORDER_FIELDS})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CommandError("invalid", problems) from None
    market = body.market or rt.settings.markets[0].symbol
    if market not in rt.exchange.markets:
        raise CommandError("not_found", f"no market {market}")
    if body.price is None:
        raise CommandError(
            "invalid",
            "price is required (market orders: the protection price, the worst you accept)",
        )
    result = await rt.place(
        member.member_id,
        market,
        body.side,
        body.price,
        body.quantity,
        body.type,
        body.time_in_force,
    )
    return placed_json(body, market, result)


async def _cancel(rt: Runtime, member: MemberPrincipal, message: dict[str, Any]) -> dict[str, Any]:
    order_id = message.get("order_id")
    if type(order_id) is not int or order_id <= 0:
        raise CommandError("invalid", "order_id: a positive integer")
    market, events = await rt.cancel_events(member.member_id, order_id)
    released = sum(e.remaining for e in events if isinstance(e, Cancelled))
    return {"id": order_id, "market": market, "status": "cancelled", "cancelled": released}


_COMMANDS = {"place": _place, "cancel": _cancel}


def build_router() -> APIRouter:
    """The order-entry WebSocket."""
    router = APIRouter(tags=["member"])

    @router.websocket("/ws/trade")
    async def ws_trade(ws: WebSocket) -> None:
        rt = runtime(ws)
        try:
            member = ws_member(ws)
        except HTTPException as exc:
            await ws.close(code=1008, reason=str(exc.detail))
            return
        await ws.accept()
        outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        in_flight: set[asyncio.Task[None]] = set()

        async def send_all() -> None:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                while (reply := await outbox.get()) is not None:
                    await ws.send_text(json.dumps(reply))

        async def run(op: str, client_id: Any, message: dict[str, Any]) -> None:
            reply: dict[str, Any] = {"op": op, "client_id": client_id}
            try:
                reply["order"] = await _COMMANDS[op](rt, member, message)
                reply["ok"] = True
            except Exception as exc:  # every refusal is answered, per command
                code, detail = error_of(exc)
                reply.update(ok=False, error=code, detail=detail)
                if isinstance(exc, HTTPException) and exc.headers:
                    reply["retry_after"] = int(exc.headers.get("Retry-After", "1"))
            outbox.put_nowait(reply)

        sender = asyncio.ensure_future(send_all())
        try:
            while True:
                frame = await ws.receive()
                if frame["type"] == "websocket.disconnect":
                    break
                if member.expires_at and time.time() >= member.expires_at:
                    await ws.close(code=1008, reason="session expired")
                    break
                client_id = None
                try:
                    message = _parse(frame.get("text") or frame.get("bytes"))
                    client_id = message.get("client_id")
                    op = message.get("op")
                    if op not in _COMMANDS:
                        raise CommandError("invalid", "op must be 'place' or 'cancel'")
                    if len(in_flight) >= MAX_IN_FLIGHT:
                        raise CommandError("too_many_in_flight", f"at most {MAX_IN_FLIGHT}")
                    rt.order_limiter.check(f"member:{member.member_id}")
                except (CommandError, HTTPException) as exc:
                    code, detail = error_of(exc)
                    reply = {"op": None, "client_id": client_id, "ok": False}
                    reply.update(error=code, detail=detail)
                    if isinstance(exc, HTTPException) and exc.headers:
                        reply["retry_after"] = int(exc.headers.get("Retry-After", "1"))
                    if isinstance(frame.get("text"), str):
                        with contextlib.suppress(ValueError, AttributeError):
                            reply["op"] = json.loads(frame["text"]).get("op")
                    outbox.put_nowait(reply)
                    continue
                task = asyncio.ensure_future(run(op, client_id, message))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            # queued orders go in regardless (as for a REST caller that went away): wait for
            # their commit rather than abandon the futures the batcher will answer
            if in_flight:
                await asyncio.wait(set(in_flight), timeout=30)
            outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sender, 5)

    return router
