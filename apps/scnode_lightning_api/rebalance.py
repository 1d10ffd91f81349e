"""Auto-balancing of the channel with the SC Cluster (README "Auto-balancing").

A periodic task keeps the channel's local balance inside ``[low, high]`` x capacity by swaps
with the SC Cluster's rebalance endpoint (HTTP over the WireGuard tunnel):

- ``to_node`` (local below ``low``): the node makes an invoice, the cluster quotes an address,
  the node sends amount + fee there on-chain (lightningd's wallet, ``withdraw``), tells the
  cluster the txid, and the cluster pays the invoice → local balance up.
- ``from_node`` (local above ``high``): the node gives a fresh address of its lightningd wallet,
  the cluster answers an invoice of amount + fee, the node pays it (the service's at-most-once
  payment), and the cluster sends the amount on-chain → local balance down.

Every swap is a row in the API's SQLite (``synchronous=FULL``) written before each step's
external call; the swap id is the idempotency key of every cluster request, of the invoice
label and of the payment. A restart resumes the unfinished swap; it never starts a second one
while one is unresolved and never sends an on-chain leg twice (a swap whose ``withdraw`` outcome
was lost is ``stuck`` for the operator).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from scnode_core.lightning_rpc import LightningRpcError, LightningUnavailableError
from scnode_lightning_api.metrics import LightningMetrics
from scnode_lightning_api.service import LightningService, RequestRefusedError
from scnode_lightning_api.settings import LightningApiSettings

log = logging.getLogger(__name__)

MEMBER = "scnode-rebalance"  # the invoices' and payments' member (no exchange member has it)
ALERT_KINDS = (
    "budget_exhausted",
    "cluster_refused",
    "cluster_unreachable",
    "outside_band",
    "swap_stuck",
    "swap_failed",
)
FINAL = ("complete", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rebalance_swaps (
    swap_id TEXT PRIMARY KEY,
    day TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('to_node', 'from_node')),
    amount_sat INTEGER NOT NULL,
    state TEXT NOT NULL,
    bolt11 TEXT,
    address TEXT,
    onchain_sat INTEGER,
    fee_sat INTEGER,
    routing_fee_sat INTEGER,
    txid TEXT,
    error TEXT,
    local_before_msat INTEGER NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS rebalance_days (
    day TEXT PRIMARY KEY,
    moved_sat INTEGER NOT NULL DEFAULT 0,
    fees_sat INTEGER NOT NULL DEFAULT 0
);
"""
_SELECT = (
    "SELECT swap_id, day, direction, amount_sat, state, bolt11, address, onchain_sat, fee_sat, "
    "routing_fee_sat, txid, error, local_before_msat, created, updated, finished "
    "FROM rebalance_swaps "
)


@dataclass(frozen=True)
class Swap:
    swap_id: str
    day: str
    direction: str
    amount_sat: int
    state: str
    bolt11: str | None
    address: str | None
    onchain_sat: int | None
    fee_sat: int | None
    routing_fee_sat: int | None
    txid: str | None
    error: str | None
    local_before_msat: int
    created: float
    updated: float
    finished: float | None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "bolt11"}


class ClusterRefusedError(Exception):
    """The cluster answered, and said no (4xx)."""


class ClusterUnreachableError(Exception):
    """No answer from the cluster, or a 5xx (retry later)."""


def utc_day(now: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y-%m-%d")


class Rebalancer:
    """The periodic task; ``step()`` is one pass (tests may call it directly)."""

    def __init__(
        self,
        settings: LightningApiSettings,
        service: LightningService,
        metrics: LightningMetrics,
    ) -> None:
        self.s = settings
        self.service = service
        self.metrics = metrics
        self.db = service.store.db
        self.db.executescript(_SCHEMA)
        token = settings.rebalance_cluster_token
        self.http = httpx.AsyncClient(
            base_url=str(settings.rebalance_cluster_url or "").rstrip("/"),
            timeout=settings.rebalance_http_timeout_seconds,
            headers={"Authorization": f"Bearer {token.get_secret_value()}"} if token else {},
        )
        self.alerts: dict[str, str] = {}
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._step_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        for kind in ALERT_KINDS:
            self.metrics.rebalance_alert.labels(kind=kind).set(0)
        self.metrics.rebalance_enabled.set(1)
        self._export_budget()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Let a running pass finish (a withdraw cut short would leave its swap stuck), then
        stop; cancel only if it takes longer than a cluster call may."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(
                    asyncio.shield(self._task), self.s.rebalance_http_timeout_seconds + 10
                )
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self.http.aclose()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.step()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except (LightningUnavailableError, LightningRpcError) as exc:
                self.last_error = f"lightningd: {exc}"
                log.warning("rebalance: lightningd: %s", exc)
            except Exception as exc:  # never let the task die: log and try again next tick
                self.last_error = repr(exc)
                log.exception("rebalance step failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.s.rebalance_interval_seconds)

    # -- alerts ----------------------------------------------------------------------------
    def alert(self, kind: str, message: str) -> None:
        """An ALERT log line and metrics, once per episode (until ``clear``)."""
        if self.alerts.get(kind) is None:
            log.warning("ALERT rebalance %s: %s", kind, message)
            self.metrics.rebalance_alerts.labels(kind=kind).inc()
        self.alerts[kind] = message
        self.metrics.rebalance_alert.labels(kind=kind).set(1)

    def clear(self, kind: str) -> None:
        if self.alerts.pop(kind, None) is not None:
            log.info("rebalance %s: cleared", kind)
        self.metrics.rebalance_alert.labels(kind=kind).set(0)

    # -- state -----------------------------------------------------------------------------
    def swap(self, swap_id: str) -> Swap | None:
        row = self.db.execute(_SELECT + "WHERE swap_id = ?", (swap_id,)).fetchone()
        return Swap(*row) if row else None

    def swaps(self, limit: int = 50) -> list[Swap]:
        rows = self.db.execute(_SELECT + "ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [Swap(*r) for r in rows]

    def open_swap(self) -> Swap | None:
        row = self.db.execute(
            _SELECT + "WHERE state NOT IN ('complete', 'failed') ORDER BY created LIMIT 1"
        ).fetchone()
        return Swap(*row) if row else None

    def update(self, swap_id: str, **values: Any) -> Swap:
        values["updated"] = time.time()
        if values.get("state") in FINAL:
            values["finished"] = values["updated"]
        sets = ", ".join(f"{k} = ?" for k in values)
        self.db.execute(
            # column names come from this module's keyword arguments, never from outside
            f"UPDATE rebalance_swaps SET {sets} WHERE swap_id = ?",  # noqa: S608
            (*values.values(), swap_id),
        )
        found = self.swap(swap_id)
        assert found is not None
        return found

    def used(self, day: str) -> tuple[int, int]:
        row = self.db.execute(
            "SELECT moved_sat, fees_sat FROM rebalance_days WHERE day = ?", (day,)
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def charge(self, day: str, moved_sat: int = 0, fees_sat: int = 0) -> None:
        self.db.execute(
            "INSERT INTO rebalance_days (day, moved_sat, fees_sat) VALUES (?, ?, ?) "
            "ON CONFLICT (day) DO UPDATE SET moved_sat = moved_sat + excluded.moved_sat, "
            "fees_sat = fees_sat + excluded.fees_sat",
            (day, moved_sat, fees_sat),
        )
        self._export_budget()

    def _export_budget(self) -> None:
        moved, fees = self.used(utc_day())
        self.metrics.rebalance_budget_used.labels(kind="moved_sat").set(moved)
        self.metrics.rebalance_budget_used.labels(kind="fees_sat").set(fees)

    def last_finished(self) -> float | None:
        row = self.db.execute("SELECT MAX(finished) FROM rebalance_swaps").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    # -- cluster ---------------------------------------------------------------------------
    async def cluster(self, method: str, path: str, swap_id: str, body: Any = None) -> Any:
        try:
            reply = await self.http.request(
                method, path, json=body, headers={"Idempotency-Key": swap_id}
            )
        except httpx.HTTPError as exc:
            self.alert("cluster_unreachable", f"{self.s.rebalance_cluster_url}: {exc!r}")
            raise ClusterUnreachableError(str(exc)) from exc
        if reply.status_code >= 500:
            self.alert("cluster_unreachable", f"{path}: HTTP {reply.status_code} {reply.text}")
            raise ClusterUnreachableError(reply.text)
        self.clear("cluster_unreachable")
        if reply.status_code >= 400:
            self.alert("cluster_refused", f"{path}: HTTP {reply.status_code} {reply.text}")
            raise ClusterRefusedError(f"HTTP {reply.status_code}: {reply.text}")
        self.clear("cluster_refused")
        return reply.json()

    # -- the pass --------------------------------------------------------------------------
    async def step(self) -> None:
        async with self._step_lock:
            self._export_budget()
            pending = self.open_swap()
            if pending is not None:
                # unreachable: alerted; the swap resumes on a later pass
                with contextlib.suppress(ClusterUnreachableError):
                    await self.advance(pending)
                return
            await self.consider()

    async def consider(self) -> None:
        """Start a swap if the balance is outside the band (and cool-down and budget allow)."""
        health = await self.service.health()
        channel = health["channel"]
        if channel is None or channel["state"] != "CHANNELD_NORMAL":
            return
        total, local = int(channel["total_msat"]), int(channel["local_msat"])
        if total <= 0:
            return
        now = time.time()
        self.metrics.rebalance_local_fraction.set(local / total)
        low, high = self.s.rebalance_low * total, self.s.rebalance_high * total
        if low <= local <= high:
            self.service.store.set_state("rebalance.outside_since", "")
            self.clear("outside_band")
            self.clear("budget_exhausted")
            return
        since_text = self.service.store.get_state("rebalance.outside_since")
        since = float(since_text) if since_text else now
        if not since_text:
            self.service.store.set_state("rebalance.outside_since", repr(now))
        if now - since > self.s.rebalance_alert_outside_band_seconds:
            self.alert(
                "outside_band",
                f"local {local} msat of {total} outside [{low:.0f}, {high:.0f}] "
                f"for {now - since:.0f} s",
            )
        finished = self.last_finished()
        if finished is not None and now - finished < self.s.rebalance_cooldown_seconds:
            return
        if not channel["peer_connected"]:
            return
        target = (self.s.rebalance_low + self.s.rebalance_high) / 2 * total
        needed = abs(int(target) - local) // 1000
        direction = "to_node" if local < low else "from_node"
        day = utc_day(now)
        moved, fees = self.used(day)
        amount = min(needed, self.s.rebalance_max_swap_sat, self.s.rebalance_daily_max_sat - moved)
        if fees >= self.s.rebalance_daily_max_fee_sat or amount < self.s.rebalance_min_swap_sat:
            if needed >= self.s.rebalance_min_swap_sat:
                self.alert(
                    "budget_exhausted",
                    f"{direction} of {needed} sat needed; today moved {moved} of "
                    f"{self.s.rebalance_daily_max_sat} sat, fees {fees} of "
                    f"{self.s.rebalance_daily_max_fee_sat} sat",
                )
            return
        swap_id = f"rb-{day.replace('-', '')}-{secrets.token_hex(8)}"
        self.db.execute(
            "INSERT INTO rebalance_swaps (swap_id, day, direction, amount_sat, state, "
            "local_before_msat, created, updated) VALUES (?, ?, ?, ?, 'new', ?, ?, ?)",
            (swap_id, day, direction, amount, local, now, now),
        )
        self.charge(day, moved_sat=amount)  # reserved now, released if nothing moves
        self.clear("budget_exhausted")
        log.info(
            "rebalance %s: %s of %d sat (local %d msat of %d)",
            swap_id,
            direction,
            amount,
            local,
            total,
        )
        swap = self.swap(swap_id)
        assert swap is not None
        with contextlib.suppress(ClusterUnreachableError):
            await self.advance(swap)

    async def advance(self, swap: Swap) -> None:
        """Take an unfinished swap as far as it can go now."""
        if time.time() - swap.created > self.s.rebalance_swap_timeout_seconds:
            self.alert("swap_stuck", f"{swap.swap_id} ({swap.direction}) still {swap.state}")
        if swap.direction == "to_node":
            await self._to_node(swap)
        else:
            await self._from_node(swap)

    def _give_up(self, swap: Swap, reason: str, *, nothing_moved: bool) -> None:
        self.update(swap.swap_id, state="failed", error=reason)
        if nothing_moved:
            self.charge(swap.day, moved_sat=-swap.amount_sat, fees_sat=-(swap.fee_sat or 0))
        self.metrics.rebalance_swaps.labels(direction=swap.direction, outcome="failed").inc()
        self.alert("swap_failed", f"{swap.swap_id}: {reason}")

    def _done(self, swap: Swap, **values: Any) -> None:
        self.update(swap.swap_id, state="complete", **values)
        self.metrics.rebalance_swaps.labels(direction=swap.direction, outcome="complete").inc()
        self.clear("swap_failed")
        self.clear("swap_stuck")
        log.info("rebalance %s: complete", swap.swap_id)

    def _fee_fits(self, swap: Swap, fee_sat: int) -> bool:
        _, fees = self.used(swap.day)
        return fees + fee_sat <= self.s.rebalance_daily_max_fee_sat

    async def _to_node(self, swap: Swap) -> None:
        sid = swap.swap_id
        if swap.state == "new":
            invoice, _ = await self.service.create_invoice(
                member=MEMBER,
                idempotency_key=sid,
                amount_msat=swap.amount_sat * 1000,
                description=f"SC Cluster rebalance {sid}",
                expiry=int(self.s.rebalance_swap_timeout_seconds) + 3600,
            )
            swap = self.update(sid, state="invoiced", bolt11=invoice["bolt11"])
        if swap.state == "invoiced":
            current = await self.service.invoice_by_label(f"{MEMBER}:{sid}")
            if current is None or int(current["expires_at"] or 0) < time.time() + 600:
                # the cluster stayed away too long: start afresh rather than quote a dying invoice
                self._give_up(swap, "the swap's invoice is (nearly) expired", nothing_moved=True)
                return
            node_id = (await self.service.node_info())["id"]
            try:
                quote = await self.cluster(
                    "POST",
                    "/v1/swaps",
                    sid,
                    {
                        "swap_id": sid,
                        "node_id": node_id,
                        "direction": "to_node",
                        "amount_sat": swap.amount_sat,
                        "bolt11": swap.bolt11,
                    },
                )
            except ClusterRefusedError as exc:
                self._give_up(swap, f"cluster refused: {exc}", nothing_moved=True)
                return
            fee = int(quote["fee_sat"])
            if int(quote["onchain_sat"]) != swap.amount_sat + fee:
                self._give_up(swap, f"odd quote {quote}", nothing_moved=True)
                return
            if not self._fee_fits(swap, fee):
                self.alert("budget_exhausted", f"{sid}: cluster fee {fee} sat over today's budget")
                self._give_up(swap, "fee over the daily budget", nothing_moved=True)
                return
            self.charge(swap.day, fees_sat=fee)
            swap = self.update(
                sid,
                state="quoted",
                address=quote["address"],
                onchain_sat=int(quote["onchain_sat"]),
                fee_sat=fee,
            )
        if swap.state == "quoted":
            # recorded first: a crash during withdraw leaves "sending", never sent again
            swap = self.update(sid, state="sending")
            try:
                sent = await self.service.rpc.call(
                    "withdraw", destination=swap.address, satoshi=swap.onchain_sat
                )
            except LightningRpcError as exc:  # lightningd refused: nothing was broadcast
                self._give_up(swap, f"withdraw: {exc.code} {exc.message}", nothing_moved=True)
                return
            swap = self.update(sid, state="sent", txid=str(sent["txid"]))
        if swap.state == "sending":
            self.alert(
                "swap_stuck",
                f"{sid}: the on-chain leg's outcome is unknown (restart during withdraw); "
                f"check lightningd's transactions to {swap.address}",
            )
            return
        if swap.state == "sent":
            try:
                result = await self.cluster(
                    "POST", f"/v1/swaps/{sid}/onchain", sid, {"txid": swap.txid}
                )
            except ClusterRefusedError as exc:
                # our coins went out: keep it open for the operator, never send again
                self.alert("swap_stuck", f"{sid}: cluster did not accept {swap.txid}: {exc}")
                return
            if result.get("state") == "failed":
                self.alert("swap_stuck", f"{sid}: cluster could not pay: {result.get('error')}")
                return
            if result.get("state") != "complete":
                return
            paid = await self.service.invoice_by_label(f"{MEMBER}:{sid}")
            if paid is None or paid["status"] != "paid":
                return  # the cluster's payment is not settled here yet: next pass
            self._done(swap)

    async def _from_node(self, swap: Swap) -> None:
        sid = swap.swap_id
        if swap.state == "new":
            address = (await self.service.rpc.call("newaddr"))["bech32"]
            swap = self.update(sid, state="addressed", address=address)
        if swap.state == "addressed":
            try:
                quote = await self.cluster(
                    "POST",
                    "/v1/swaps",
                    sid,
                    {
                        "swap_id": sid,
                        "node_id": (await self.service.node_info())["id"],
                        "direction": "from_node",
                        "amount_sat": swap.amount_sat,
                        "address": swap.address,
                    },
                )
            except ClusterRefusedError as exc:
                self._give_up(swap, f"cluster refused: {exc}", nothing_moved=True)
                return
            fee = int(quote["fee_sat"])
            decoded = await self.service.rpc.call("decode", string=quote["bolt11"])
            if int(decoded.get("amount_msat") or 0) != (swap.amount_sat + fee) * 1000:
                self._give_up(swap, f"invoice amount is not amount + fee {fee}", nothing_moved=True)
                return
            routing_max = self._routing_max_sat(swap.amount_sat + fee)
            if not self._fee_fits(swap, fee + routing_max):
                self.alert("budget_exhausted", f"{sid}: cluster fee {fee} sat over today's budget")
                self._give_up(swap, "fee over the daily budget", nothing_moved=True)
                return
            self.charge(swap.day, fees_sat=fee)
            swap = self.update(sid, state="quoted", bolt11=quote["bolt11"], fee_sat=fee)
        if swap.state in ("quoted", "paying"):
            if swap.state == "quoted":
                swap = self.update(sid, state="paying")
            assert swap.bolt11 is not None
            try:
                result = await self.service.pay(
                    member=MEMBER,
                    idempotency_key=f"rebalance-{sid}",
                    bolt11=swap.bolt11,
                    amount_msat=None,
                    max_fee_msat=self._routing_max_sat(swap.amount_sat + (swap.fee_sat or 0))
                    * 1000,
                )
            except RequestRefusedError as exc:
                self._give_up(swap, f"payment refused: {exc.reason}", nothing_moved=True)
                return
            payment = result.payment
            if payment.state == "failed":
                self._give_up(swap, f"payment failed: {payment.error}", nothing_moved=True)
                return
            if payment.state != "complete":
                return  # pending: settled by the service's reconciler, seen on a later pass
            routing = -(-((payment.amount_sent_msat or 0) - payment.amount_msat) // 1000)
            self.charge(swap.day, fees_sat=routing)
            swap = self.update(sid, state="paid", routing_fee_sat=routing)
        if swap.state == "paid":
            try:
                result = await self.cluster("GET", f"/v1/swaps/{sid}", sid)
            except ClusterRefusedError:
                self.alert("swap_stuck", f"{sid}: paid, the cluster does not know the swap")
                return
            if result.get("state") == "complete" and result.get("txid"):
                self._done(swap, txid=str(result["txid"]))

    def _routing_max_sat(self, amount_sat: int) -> int:
        msat = self.service.default_max_fee_base_msat + (
            amount_sat * 1000 * self.service.default_max_fee_ppm // 10**6
        )
        return -(-msat // 1000)

    # -- status ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        day = utc_day()
        moved, fees = self.used(day)
        return {
            "enabled": True,
            "band": {"low": self.s.rebalance_low, "high": self.s.rebalance_high},
            "day": day,
            "moved_sat": moved,
            "max_moved_sat": self.s.rebalance_daily_max_sat,
            "fees_sat": fees,
            "max_fees_sat": self.s.rebalance_daily_max_fee_sat,
            "alerts": dict(self.alerts),
            "last_error": self.last_error,
            "swaps": [s.to_json() for s in self.swaps()],
        }
