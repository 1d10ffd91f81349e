"""What the routes do, in terms of lightningd's RPCs. Amounts are integer msat throughout.

Idempotency lives where a crash cannot lose it:
- an invoice's label is ``<member>:<idempotency key>`` and lightningd refuses a second invoice
  with the same label (error 900), so the same key always gives the same invoice;
- a payment is recorded (fsync'd) under its key *before* lightningd is asked to pay, and a
  payment whose outcome is unknown (the call failed or this API died) is settled from
  ``listpays``/``listsendpays`` — never by paying again. An error from a pay call is not taken
  as proof of failure: only lightningd's lists showing the payment failed with nothing
  pending (and still so after a grace period, should a retry be between attempts) are.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from scnode_core.chain_rpc import ChainRpcClient, ChainRpcError, ChainUnavailableError
from scnode_core.eventjournal import EventBus
from scnode_core.lightning_rpc import LightningClient, LightningRpcError
from scnode_lightning_api.store import LightningApiStore, Payment

log = logging.getLogger(__name__)

MEMBER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")
CURRENCY = {"bitcoin": "bc", "testnet": "tb", "testnet4": "tb", "signet": "tbs", "regtest": "bcrt"}
INVOICE_ALREADY_EXISTS = 900
# lightningd's invoice command refuses (-32602, which would be a 502 here) a label over 128 bytes
# and a description over 639 bytes (what a BOLT11 field holds)
MAX_LABEL_BYTES = 128
MAX_DESCRIPTION_BYTES = 639


class RequestRefusedError(Exception):
    """A request refused for a reason the caller must fix (4xx)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class PaymentResult:
    payment: Payment
    replayed: bool


def check_member(member: str) -> None:
    if not MEMBER_RE.match(member):
        raise RequestRefusedError(422, "member must be 1-64 characters of letters, digits and _.-")


def check_key(key: str) -> None:
    if not IDEMPOTENCY_KEY_RE.match(key):
        raise RequestRefusedError(422, "idempotency_key must be 8-128 of [A-Za-z0-9_.:-]")


def invoice_json(inv: dict[str, Any]) -> dict[str, Any]:
    """A ``listinvoices`` entry as clients see it (member and key split out of the label)."""
    label = str(inv.get("label", ""))
    member, sep, key = label.partition(":")
    out: dict[str, Any] = {
        "label": label,
        "member": member if sep else None,
        "idempotency_key": key if sep else None,
        "bolt11": inv.get("bolt11"),
        "payment_hash": inv["payment_hash"],
        "amount_msat": inv.get("amount_msat"),
        "description": inv.get("description"),
        "status": inv["status"],
        "expires_at": inv.get("expires_at"),
        "created_index": inv.get("created_index"),
    }
    if inv["status"] == "paid":
        out.update(
            {
                "amount_received_msat": inv.get("amount_received_msat"),
                "paid_at": inv.get("paid_at"),
                "pay_index": inv.get("pay_index"),
                "preimage": inv.get("payment_preimage"),
            }
        )
    return out


class LightningService:
    """The node's lightningd as the exchange, the wallet app and the owner see it."""

    def __init__(
        self,
        rpc: LightningClient,
        store: LightningApiStore,
        bus: EventBus,
        *,
        bitcoind: ChainRpcClient | None = None,
        cluster_peer_id: str | None = None,
        pay_command: str = "xpay",
        default_max_fee_base_msat: int = 1_000,
        default_max_fee_ppm: int = 5_000,
        unsent_grace_seconds: float = 60.0,
        sync_tolerance_blocks: int = 2,
    ) -> None:
        self.rpc = rpc
        self.store = store
        self.bus = bus
        self.bitcoind = bitcoind
        self.cluster_peer_id = cluster_peer_id
        self.pay_command = pay_command
        self.default_max_fee_base_msat = default_max_fee_base_msat
        self.default_max_fee_ppm = default_max_fee_ppm
        self.unsent_grace_seconds = unsent_grace_seconds
        self.sync_tolerance_blocks = sync_tolerance_blocks
        self._locks: dict[str, asyncio.Lock] = {}
        # payments whose pay call is running in this process: their outcome comes from the call
        self._in_flight: set[str] = set()
        self._network: str | None = None

    # -- node ------------------------------------------------------------------------------
    async def network(self) -> str:
        if self._network is None:
            self._network = str((await self.rpc.call("getinfo"))["network"])
        return self._network

    async def node_info(self) -> dict[str, Any]:
        info = await self.rpc.call("getinfo")
        self._network = str(info["network"])
        return {
            "id": info["id"],
            "alias": info.get("alias"),
            "color": info.get("color"),
            "network": info["network"],
            "version": info.get("version"),
            "blockheight": info.get("blockheight"),
            "num_peers": info.get("num_peers"),
            "num_active_channels": info.get("num_active_channels"),
            "num_pending_channels": info.get("num_pending_channels"),
            "num_inactive_channels": info.get("num_inactive_channels"),
            "address": info.get("address", []),
            "binding": info.get("binding", []),
            "fees_collected_msat": info.get("fees_collected_msat"),
            "warning_lightningd_sync": info.get("warning_lightningd_sync"),
            "warning_bitcoind_sync": info.get("warning_bitcoind_sync"),
        }

    async def chain_tip(self) -> int | None:
        """bitcoind's block count, or None when it is not configured or not answering."""
        if self.bitcoind is None:
            return None
        try:
            return int(await self.bitcoind.call("getblockcount"))
        except (ChainRpcError, ChainUnavailableError) as exc:
            log.warning("bitcoind not answering: %s", exc)
            return None

    def main_channel(self, channels: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The channel with the SC Cluster (else the largest), preferring live ones."""
        if self.cluster_peer_id:
            channels = [c for c in channels if c.get("peer_id") == self.cluster_peer_id]
        if not channels:
            return None

        def rank(c: dict[str, Any]) -> tuple[bool, int]:
            return (c.get("state") == "CHANNELD_NORMAL", int(c.get("total_msat", 0)))

        return max(channels, key=rank)

    async def health(self) -> dict[str, Any]:
        info, peer_channels, tip = await asyncio.gather(
            self.rpc.call("getinfo"),
            self.rpc.call("listpeerchannels"),
            self.chain_tip(),
        )
        height = int(info.get("blockheight", 0))
        lag = None if tip is None else max(0, tip - height)
        synced = "warning_lightningd_sync" not in info and (
            lag is None or lag <= self.sync_tolerance_blocks
        )
        channel = self.main_channel(list(peer_channels.get("channels", [])))
        channel_out: dict[str, Any] | None = None
        if channel is not None:
            total = int(channel.get("total_msat", 0))
            local = int(channel.get("to_us_msat", 0))
            channel_out = {
                "peer_id": channel.get("peer_id"),
                "channel_id": channel.get("channel_id"),
                "short_channel_id": channel.get("short_channel_id"),
                "state": channel.get("state"),
                "peer_connected": bool(channel.get("peer_connected")),
                "total_msat": total,
                "local_msat": local,
                "remote_msat": total - local,
                "spendable_msat": channel.get("spendable_msat"),
                "receivable_msat": channel.get("receivable_msat"),
            }
        usable = bool(
            channel_out
            and channel_out["state"] == "CHANNELD_NORMAL"
            and channel_out["peer_connected"]
        )
        return {
            "ok": synced and usable,
            "node_id": info["id"],
            "network": info.get("network"),
            "synced": synced,
            "blockheight": height,
            "chain_tip": tip,
            "blocks_behind": lag,
            "warning_lightningd_sync": info.get("warning_lightningd_sync"),
            "peer_connected": bool(channel_out and channel_out["peer_connected"]),
            "channel": channel_out,
        }

    # -- invoices --------------------------------------------------------------------------
    async def create_invoice(
        self,
        *,
        member: str,
        idempotency_key: str,
        amount_msat: int | None,
        description: str,
        expiry: int,
    ) -> tuple[dict[str, Any], bool]:
        """(invoice, replayed): the same member and key always give the same invoice."""
        check_member(member)
        check_key(idempotency_key)
        label = f"{member}:{idempotency_key}"
        if len(label.encode()) > MAX_LABEL_BYTES:
            raise RequestRefusedError(
                422,
                f"member and idempotency_key together must be at most {MAX_LABEL_BYTES - 1} "
                "characters (lightningd's invoice label)",
            )
        if len(description.encode()) > MAX_DESCRIPTION_BYTES:
            raise RequestRefusedError(
                422, f"description must be at most {MAX_DESCRIPTION_BYTES} bytes in UTF-8"
            )
        try:
            created = await self.rpc.call(
                "invoice",
                amount_msat="any" if amount_msat is None else amount_msat,
                label=label,
                description=description,
                expiry=expiry,
            )
        except LightningRpcError as exc:
            if exc.code != INVOICE_ALREADY_EXISTS:
                raise
            existing = await self.invoice_by_label(label)
            if existing is None:  # deleted meanwhile (delinvoice): the label is free again
                raise RequestRefusedError(409, "invoice of this key was just deleted") from None
            if existing["amount_msat"] != amount_msat or existing["description"] != description:
                raise RequestRefusedError(
                    409, "idempotency_key was already used for a different invoice"
                ) from None
            return existing, True
        out = invoice_json(
            {
                "label": label,
                "bolt11": created["bolt11"],
                "payment_hash": created["payment_hash"],
                "amount_msat": amount_msat,
                "description": description,
                "status": "unpaid",
                "expires_at": created["expires_at"],
                "created_index": created.get("created_index"),
            }
        )
        if "warning_capacity" in created:
            out["warning_capacity"] = created["warning_capacity"]
        self.bus.publish(
            "invoice_created",
            {k: out[k] for k in ("label", "member", "payment_hash", "amount_msat", "expires_at")},
            dedupe=f"invoice_created:{created['payment_hash']}",
        )
        return out, False

    async def invoice_by_label(self, label: str) -> dict[str, Any] | None:
        found = (await self.rpc.call("listinvoices", label=label))["invoices"]
        return invoice_json(found[0]) if found else None

    async def invoice_by_hash(self, payment_hash: str) -> dict[str, Any]:
        if not re.fullmatch(r"[0-9a-f]{64}", payment_hash):
            raise RequestRefusedError(422, "payment_hash must be 64 lowercase hex characters")
        found = (await self.rpc.call("listinvoices", payment_hash=payment_hash))["invoices"]
        if not found:
            raise RequestRefusedError(404, "no invoice with this payment hash")
        return invoice_json(found[0])

    async def list_invoices(
        self, *, member: str | None, status: str | None, start: int, limit: int
    ) -> dict[str, Any]:
        """One page in lightningd's creation order; ``next_start`` continues after it. A member
        or status filter applies to the page, so a page may hold fewer than ``limit``."""
        if member is not None:
            check_member(member)
        page = (await self.rpc.call("listinvoices", index="created", start=start, limit=limit))[
            "invoices"
        ]
        rows = [invoice_json(i) for i in page]
        next_start = int(page[-1]["created_index"]) + 1 if page else start
        if member is not None:
            rows = [r for r in rows if r["member"] == member]
        if status is not None:
            rows = [r for r in rows if r["status"] == status]
        return {"invoices": rows, "next_start": next_start, "more": len(page) == limit}

    # -- payments --------------------------------------------------------------------------
    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def pay(
        self,
        *,
        member: str,
        idempotency_key: str,
        bolt11: str,
        amount_msat: int | None,
        max_fee_msat: int | None,
    ) -> PaymentResult:
        """Pay at most once per key (and at most once per invoice), even across crashes."""
        check_member(member)
        check_key(idempotency_key)
        request_hash = hashlib.sha256(
            json.dumps(
                {"member": member, "bolt11": bolt11, "amount": amount_msat, "fee": max_fee_msat},
                sort_keys=True,
            ).encode()
        ).hexdigest()
        async with self._lock(idempotency_key):
            record = self.store.payment(idempotency_key)
            if record is not None:
                if record.request_hash != request_hash:
                    raise RequestRefusedError(
                        409, "idempotency_key was already used for a different payment"
                    )
                if record.state == "pending":
                    record = await self.settle_from_lists(record)
                return PaymentResult(record, replayed=True)
            decoded = await self._decode(bolt11)
            payment_hash = str(decoded["payment_hash"])
            invoice_amount = decoded.get("amount_msat")
            if invoice_amount is not None and amount_msat is not None:
                raise RequestRefusedError(422, "the invoice names its amount: omit amount_msat")
            if invoice_amount is None and amount_msat is None:
                raise RequestRefusedError(422, "the invoice names no amount; give amount_msat")
            amount = int(invoice_amount) if invoice_amount is not None else int(amount_msat or 0)
            if amount <= 0:
                raise RequestRefusedError(422, "amount_msat must be positive")
            if int(decoded.get("created_at", 0)) + int(decoded.get("expiry", 3600)) <= time.time():
                raise RequestRefusedError(422, "the invoice has expired")
            live = self.store.live_payment_for(payment_hash)
            if live is not None:
                raise RequestRefusedError(
                    409,
                    f"this invoice is already {live.state} under idempotency key "
                    f"{live.idempotency_key}",
                )
            fee = max_fee_msat
            if fee is None:
                fee = self.default_max_fee_base_msat + amount * self.default_max_fee_ppm // 10**6
            record = self.store.begin_payment(
                key=idempotency_key,
                member=member,
                request_hash=request_hash,
                bolt11=bolt11,
                payment_hash=payment_hash,
                destination=decoded.get("payee"),
                amount_msat=amount,
                max_fee_msat=fee,
            )
            self._in_flight.add(idempotency_key)
            try:
                record = await self._send(record, amount_msat)
            finally:
                self._in_flight.discard(idempotency_key)
            return PaymentResult(record, replayed=False)

    async def _decode(self, bolt11: str) -> dict[str, Any]:
        try:
            decoded = await self.rpc.call("decode", string=bolt11)
        except LightningRpcError as exc:
            raise RequestRefusedError(422, f"not a valid invoice: {exc.message}") from None
        if decoded.get("type") != "bolt11 invoice" or not decoded.get("valid", False):
            raise RequestRefusedError(422, "only valid BOLT11 invoices can be paid")
        expected = CURRENCY.get(await self.network())
        if expected is not None and decoded.get("currency") != expected:
            raise RequestRefusedError(
                422, f"invoice is for {decoded.get('currency')}, this node is on {self._network}"
            )
        return dict(decoded)

    async def _send(self, record: Payment, amount_msat: int | None) -> Payment:
        key = record.idempotency_key
        if self.pay_command == "xpay":
            params: dict[str, Any] = {"invstring": record.bolt11, "maxfee": record.max_fee_msat}
        else:
            params = {
                "bolt11": record.bolt11,
                "maxfee": record.max_fee_msat,
                "label": f"{record.member}:{key}",
            }
        params["amount_msat"] = amount_msat
        try:
            result = await self.rpc.call(self.pay_command, **params)
        except LightningRpcError as exc:
            # Not proof of failure (parts may still be held): lightningd's lists decide.
            log.info("payment %s: %s answered %s", key, self.pay_command, exc)
            return await self.settle_from_lists(record, call_error=exc)
        # (a LightningUnavailableError leaves the record pending for the reconciler)
        done = self.store.complete_payment(
            key,
            preimage=str(result["payment_preimage"]),
            amount_sent_msat=int(result["amount_sent_msat"]),
        )
        self._announce(done)
        return done

    async def settle_from_lists(
        self, record: Payment, call_error: LightningRpcError | None = None
    ) -> Payment:
        """Bring a pending record up to date from ``listpays`` (and ``listsendpays``)."""
        if record.state != "pending":
            return record
        if record.idempotency_key in self._in_flight and call_error is None:
            return record  # our own pay call is still running and will record its outcome
        pays = (await self.rpc.call("listpays", payment_hash=record.payment_hash))["pays"]
        parts = (await self.rpc.call("listsendpays", payment_hash=record.payment_hash))["payments"]
        key = record.idempotency_key
        complete = [p for p in pays if p.get("status") == "complete"]
        if complete:
            done = complete[-1]
            sent = sum(
                int(p.get("amount_sent_msat", 0)) for p in parts if p.get("status") == "complete"
            )
            preimage = done.get("preimage") or done.get("payment_preimage")
            record = self.store.complete_payment(
                key,
                preimage=str(preimage),
                amount_sent_msat=sent or int(done.get("amount_sent_msat", 0)),
            )
            self._announce(record)
            return record
        if any(p.get("status") == "pending" for p in parts):
            if record.failed_seen is not None:
                self.store.note_failed_seen(key, None)
            return record
        now = time.time()
        if not parts:
            if call_error is not None:
                # lightningd refused before sending anything (no route, expired, too expensive)
                record = self.store.fail_payment(
                    key, code=call_error.code, error=call_error.message
                )
                self._announce(record)
            elif now - record.created > self.unsent_grace_seconds:
                record = self.store.fail_payment(
                    key,
                    code=None,
                    error="never started by lightningd (this API stopped before it was sent)",
                )
                self._announce(record)
            return record
        # every part failed: final once it stays so (a retrying payer may be between attempts)
        if call_error is not None or (
            record.failed_seen is not None and now - record.failed_seen > self.unsent_grace_seconds
        ):
            code = call_error.code if call_error is not None else None
            message = call_error.message if call_error is not None else _part_failure(parts)
            record = self.store.fail_payment(key, code=code, error=message)
            self._announce(record)
        elif record.failed_seen is None:
            self.store.note_failed_seen(key, now)
        return record

    def _announce(self, record: Payment) -> None:
        if record.state == "pending":
            return
        kind = "payment_settled" if record.state == "complete" else "payment_failed"
        self.bus.publish(
            kind,
            {
                k: v
                for k, v in record.to_json().items()
                if k not in ("bolt11", "preimage", "created_at", "updated_at")
            },
            dedupe=f"{kind}:{record.idempotency_key}",
        )

    async def payment(self, key: str) -> Payment:
        check_key(key)
        if key in self._in_flight:  # its pay call is running: the record says pending
            record = self.store.payment(key)
            assert record is not None
            return record
        async with self._lock(key):
            record = self.store.payment(key)
            if record is None:
                raise RequestRefusedError(404, "no payment with this idempotency key")
            if record.state == "pending":
                record = await self.settle_from_lists(record)
            return record

    async def reconcile_pending(self) -> None:
        """Settle every payment whose outcome is not yet known (after a restart, on cl-zmq
        sendpay messages and on each poll)."""
        for record in self.store.pending_payments():
            if record.idempotency_key in self._in_flight:
                continue
            async with self._lock(record.idempotency_key):
                fresh = self.store.payment(record.idempotency_key)
                if fresh is not None:
                    await self.settle_from_lists(fresh)


def _part_failure(parts: list[dict[str, Any]]) -> str:
    last = parts[-1]
    reason = last.get("erroronion") or last.get("failcodename") or "failed"
    return f"every attempt failed ({reason})"
