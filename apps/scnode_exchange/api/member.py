"""Member routes: balances, orders, fills, the unified history and its CSV export.

Every query is filtered by the caller's member id; another member's order id gets the same
404 as an id that does not exist.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, StrictInt
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from scnode_core.openapi import DB_INT_MAX, DbId, DbIdQuery
from scnode_exchange.api.auth import MemberDep
from scnode_exchange.api.runtime import Runtime, runtime_dep
from scnode_exchange.db import Base
from scnode_exchange.ledger import Account, Asset, JournalEntry, Member, Posting
from scnode_exchange.marketdata.queries import timestamp
from scnode_exchange.matching import Fill, OrderType, Side, TimeInForce
from scnode_exchange.trading.models import Order, Trade
from scnode_exchange.trading.service import PlaceResult

RuntimeDep = Annotated[Runtime, Depends(runtime_dep)]
Limit = Annotated[int, Query(ge=1, le=500)]
BeforeId = DbIdQuery


class OrderIn(BaseModel):
    """A new order. ``price`` is sats per lot: the limit, or a market order's protection
    (the worst price it accepts); ``quantity`` is lots. Integers only."""

    market: str | None = None
    side: Side
    type: OrderType = OrderType.LIMIT
    price: StrictInt | None = Field(default=None, gt=0, le=DB_INT_MAX)
    quantity: StrictInt = Field(gt=0, le=DB_INT_MAX)
    time_in_force: TimeInForce = TimeInForce.GTC


def _asset_decimals(session: Session) -> dict[str, int]:
    return {code: int(dec) for code, dec in session.execute(select(Asset.code, Asset.decimals))}


def decimal_text(amount: int, decimals: int) -> str:
    """An integer amount of base units as an exact decimal string (no float ever)."""
    if decimals == 0:
        return str(amount)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}"


def balances(session: Session, member_id: int) -> list[dict[str, Any]]:
    """The member's accounts: balance, reserved (open orders, withdrawals), available."""
    rows = session.scalars(
        select(Account).where(Account.member_id == member_id).order_by(Account.asset)
    )
    return [
        {"asset": a.asset, "balance": a.balance, "reserved": a.reserved, "available": a.available}
        for a in rows
    ]


def _filled(session: Session, order_ids: list[int]) -> dict[int, int]:
    filled: dict[int, int] = dict.fromkeys(order_ids, 0)
    if not order_ids:
        return filled
    for column in (Trade.maker_order_id, Trade.taker_order_id):
        query = (
            select(column, func.sum(Trade.quantity)).where(column.in_(order_ids)).group_by(column)
        )
        for order_id, quantity in session.execute(query):
            filled[order_id] += int(quantity)
    return filled


def order_json(order: Order, filled: int) -> dict[str, Any]:
    """An order as its owner sees it."""
    return {
        "id": order.id,
        "market": order.market,
        "side": order.side,
        "type": order.type,
        "time_in_force": order.tif,
        "price": order.price,
        "quantity": order.quantity,
        "remaining": order.remaining,
        "filled": filled,
        "status": order.status,
        "reject_reason": order.reject_reason,
        "created_at": timestamp(order.created_at),
        "updated_at": timestamp(order.updated_at),
    }


def _page(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    return {"items": items, "next_before_id": items[-1]["id"] if len(items) == limit else None}


def placed_json(body: OrderIn, market: str, result: PlaceResult) -> dict[str, Any]:
    """The answer to a placement, from the committed result (no second database read)."""
    filled = sum(
        e.quantity
        for e in result.events
        if isinstance(e, Fill) and result.order_id in (e.maker_order_id, e.taker_order_id)
    )
    return {
        "id": result.order_id,
        "market": market,
        "side": body.side.value,
        "type": body.type.value,
        "time_in_force": body.time_in_force.value,
        "price": body.price,
        "quantity": body.quantity,
        "remaining": body.quantity - filled if result.status == "open" else 0,
        "filled": filled,
        "status": result.status,
        "reject_reason": result.reject_reason,
    }


def member_orders(
    session: Session, member_id: int, which: str, before_id: int | None, limit: int
) -> dict[str, Any]:
    """One page of the member's orders, newest first: ``open``, ``history`` or ``all``."""
    query = select(Order).where(Order.member_id == member_id)
    if which == "open":
        query = query.where(Order.status == "open")
    elif which == "history":
        query = query.where(Order.status != "open")
    if before_id is not None:
        query = query.where(Order.id < before_id)
    rows = list(session.scalars(query.order_by(Order.id.desc()).limit(limit)))
    filled = _filled(session, [o.id for o in rows])
    return _page([order_json(o, filled[o.id]) for o in rows], limit)


def member_fills(
    session: Session, member_id: int, before_id: int | None, limit: int
) -> dict[str, Any]:
    """One page of the member's fills, newest first, from the member's side."""
    query = select(Trade).where(or_(Trade.buyer_id == member_id, Trade.seller_id == member_id))
    if before_id is not None:
        query = query.where(Trade.id < before_id)
    items = []
    for t in session.scalars(query.order_by(Trade.id.desc()).limit(limit)):
        side = "buy" if t.buyer_id == member_id else "sell"
        taker = side == t.taker_side
        items.append(
            {
                "id": t.id,
                "market": t.market,
                "seq": t.seq,
                "side": side,
                "liquidity": "taker" if taker else "maker",
                "order_id": t.taker_order_id if taker else t.maker_order_id,
                "price": t.price,
                "quantity": t.quantity,
                "base_amount": t.base_amount,
                "quote_amount": t.quote_amount,
                "fee": t.buyer_fee if side == "buy" else t.seller_fee,
                "fee_asset": t.market.split("/")[0 if side == "buy" else 1],
                "time": timestamp(t.created_at),
            }
        )
    return _page(items, limit)


def _history_query(member_id: int, kind: str | None) -> Any:
    query = (
        select(Posting.id, JournalEntry, Account.asset, Posting.amount)
        .join(Account, Posting.account_id == Account.id)
        .join(JournalEntry, Posting.entry_id == JournalEntry.id)
        .where(Account.member_id == member_id)
    )
    if kind is not None:
        query = query.where(JournalEntry.kind == kind)
    return query


def _history_item(
    posting_id: int, entry: JournalEntry, asset: str, amount: int, decimals: dict[str, int]
) -> dict[str, Any]:
    # a trade entry's reason names the counterparty's order: members see only "trade"
    description = "trade" if entry.kind == "trade" else entry.reason
    return {
        "id": posting_id,
        "time": timestamp(entry.created_at),
        "kind": entry.kind,
        "asset": asset,
        "amount": amount,
        "amount_decimal": decimal_text(amount, decimals.get(asset, 0)),
        "reference": entry.reference,
        "description": description,
    }


def member_history(
    session: Session, member_id: int, kind: str | None, before_id: int | None, limit: int
) -> dict[str, Any]:
    """One page of every balance change of the member (deposits, withdrawals, trades, fees,
    payouts, owner adjustments — all are journal entries), newest first."""
    query = _history_query(member_id, kind)
    if before_id is not None:
        query = query.where(Posting.id < before_id)
    decimals = _asset_decimals(session)
    rows = session.execute(query.order_by(Posting.id.desc()).limit(limit))
    return _page([_history_item(p, e, a, amt, decimals) for p, e, a, amt in rows], limit)


_PENDING_SOURCES = (
    # (table, kind, the columns shown, which rows are still pending)
    (
        "deposits",
        "deposit",
        (
            "chain",
            "asset",
            "amount",
            "address",
            "txid",
            "vout",
            "confirmations",
            "state",
            "first_seen_at",
        ),
        ("pending",),
        True,
    ),
    (
        "withdrawals",
        "withdrawal",
        ("chain", "asset", "amount", "fee", "address", "txid", "state", "created_at"),
        ("confirmed", "failed", "cancelled", "rejected"),
        False,
    ),
)


def member_pending(session: Session, member_id: int) -> list[dict[str, Any]]:
    """Deposits not yet credited and withdrawals not yet final, from the deposits and
    withdrawals packages' tables when those packages are installed."""
    out: list[dict[str, Any]] = []
    for name, kind, columns, states, states_are_pending in _PENDING_SOURCES:
        table = Base.metadata.tables.get(name)
        if table is None or not {"id", "member_id", "state", *columns} <= set(table.c.keys()):
            continue
        state_filter = (
            table.c.state.in_(states) if states_are_pending else (table.c.state.not_in(states))
        )
        query = (
            select(table.c.id, *(table.c[c] for c in columns))
            .where(table.c.member_id == member_id, state_filter)
            .order_by(table.c.id.desc())
            .limit(100)
        )
        for row in session.execute(query).mappings():
            item: dict[str, Any] = {"kind": kind, **row}
            for key, value in item.items():
                if isinstance(value, datetime):
                    item[key] = timestamp(value)
            out.append(item)
    return out


CSV_COLUMNS = [
    "id",
    "time",
    "kind",
    "asset",
    "amount",
    "amount_decimal",
    "reference",
    "description",
]


def history_csv(sessions: Any, member_id: int, kind: str | None) -> Iterator[str]:
    """The member's whole history as CSV, oldest first, in chunks of 500 rows."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    after = 0
    while True:
        with sessions() as session:
            decimals = _asset_decimals(session)
            query = _history_query(member_id, kind).where(Posting.id > after)
            rows = list(session.execute(query.order_by(Posting.id).limit(500)))
            for p, e, a, amt in rows:
                item = _history_item(p, e, a, amt, decimals)
                # formula injection: a spreadsheet must not evaluate text from the ledger
                text = item["description"] or ""
                if text[:1] in ("=", "+", "-", "@"):
                    item["description"] = "'" + text
                writer.writerow(item)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < 500:
            return
        after = rows[-1][0]


def build_router() -> APIRouter:
    """The member routes (upstream-compatible paths under ``/api``)."""
    router = APIRouter(prefix="/api", tags=["member"])

    @router.get("/auth/me")
    def me(member: MemberDep, rt: RuntimeDep) -> dict[str, Any]:
        with rt.readers() as session:
            row = session.get(Member, member.member_id)
            if row is None:
                raise HTTPException(status.HTTP_401_UNAUTHORIZED, "member no longer exists")
            return {
                "member_id": row.id,
                "username": row.handle,
                "frozen": row.frozen,
                "session_expires_at": member.expires_at,
            }

    @router.get("/wallet")
    def wallet(member: MemberDep, rt: RuntimeDep) -> dict[str, Any]:
        with rt.readers() as session:
            rows = balances(session, member.member_id)
        # upstream's {azc, sats}: here available integer base units, plus the detail
        out: dict[str, Any] = {r["asset"].lower(): r["available"] for r in rows}
        out["balances"] = rows
        return out

    @router.get("/balances")
    def member_balances(member: MemberDep, rt: RuntimeDep) -> list[dict[str, Any]]:
        with rt.readers() as session:
            return balances(session, member.member_id)

    @router.post("/orders", status_code=status.HTTP_201_CREATED)
    async def place(body: OrderIn, member: MemberDep, rt: RuntimeDep) -> dict[str, Any]:
        rt.order_limiter.check(f"member:{member.member_id}")
        market = body.market or rt.settings.markets[0].symbol
        if market not in rt.exchange.markets:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no market {market}")
        if body.price is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
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

    @router.get("/orders/mine")
    def my_orders(
        member: MemberDep,
        rt: RuntimeDep,
        which: Annotated[Literal["open", "history", "all"], Query(alias="status")] = "open",
        before_id: BeforeId = None,
        limit: Limit = 100,
    ) -> dict[str, Any]:
        with rt.readers() as session:
            return member_orders(session, member.member_id, which, before_id, limit)

    @router.get("/orders/{order_id:int}")
    def one_order(order_id: DbId, member: MemberDep, rt: RuntimeDep) -> dict[str, Any]:
        with rt.readers() as session:
            order = session.get(Order, order_id)
            if order is None or order.member_id != member.member_id:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no order {order_id}")
            return order_json(order, _filled(session, [order.id])[order.id])

    @router.delete("/orders/{order_id:int}")
    async def cancel(order_id: DbId, member: MemberDep, rt: RuntimeDep) -> dict[str, Any]:
        rt.order_limiter.check(f"member:{member.member_id}")
        await rt.cancel(member.member_id, order_id)
        return await rt.run(_order_view, rt, order_id)

    @router.get("/trades/mine")
    def my_trades(
        member: MemberDep, rt: RuntimeDep, before_id: BeforeId = None, limit: Limit = 100
    ) -> dict[str, Any]:
        with rt.readers() as session:
            return member_fills(session, member.member_id, before_id, limit)

    @router.get("/history")
    def history(
        member: MemberDep,
        rt: RuntimeDep,
        kind: Annotated[str | None, Query(max_length=32)] = None,
        before_id: BeforeId = None,
        limit: Limit = 100,
    ) -> dict[str, Any]:
        with rt.readers() as session:
            page = member_history(session, member.member_id, kind, before_id, limit)
            # what is not booked yet comes first, on the first page only
            page["pending"] = member_pending(session, member.member_id) if before_id is None else []
            return page

    @router.get(
        "/history.csv",
        responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
    )
    def history_export(
        member: MemberDep,
        rt: RuntimeDep,
        kind: Annotated[str | None, Query(max_length=32)] = None,
    ) -> StreamingResponse:
        return StreamingResponse(
            history_csv(rt.readers, member.member_id, kind),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="history.csv"'},
        )

    return router


def _order_view(rt: Runtime, order_id: int) -> dict[str, Any]:
    with rt.readers() as session:
        order = session.get(Order, order_id)
        assert order is not None
        return order_json(order, _filled(session, [order.id])[order.id])
