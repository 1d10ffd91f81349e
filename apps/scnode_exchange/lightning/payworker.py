"""The Lightning payment worker and what the member routes call (``LightningPayments``).

One pass of the worker (``run_once``), in this order:

1. **Reconcile** every ``sending`` payment: ask the Lightning API for its key
   (``GET /v1/payments/<key>``). ``complete`` → settled, ``failed`` → refunded, ``pending`` →
   left as it is (lightningd has not decided: never paid again, never refunded). A 404 means
   the API never recorded the key — it records a payment before lightningd is asked to pay —
   so nothing was sent and asking it to pay with that same key is safe. This is also the
   first pass after a restart: the crash recovery.
2. **Send** ``reserved`` payments, oldest first: commit ``sending`` with the key BEFORE the
   API is called, then ``POST /v1/payments`` with that key and the reserved fee as
   ``max_fee_msat``; the answer is recorded as above. A 4xx refusal (invalid or expired
   invoice, the invoice already paid under another key) means the API sent nothing for this
   key: refunded. Unreachable, 5xx, timeouts and 401/403/404 (configuration) leave it
   ``sending`` for the next pass — the same key, never a new one.

Database work runs in threads so the worker shares the exchange app's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.chainclient import (
    ChainApiAuthError,
    ChainApiError,
    ChainApiNotFoundError,
    ChainApiRequestError,
    ChainApiRetryableError,
)
from scnode_exchange.lightning.bolt11 import InvoiceError, decode
from scnode_exchange.lightning.client import LightningApiClient
from scnode_exchange.lightning.models import LightningInvoice
from scnode_exchange.lightning.payments import (
    LightningPaymentService,
    PaymentConflictError,
    PaymentInfo,
    PaymentPolicy,
    PaymentRefusedError,
)
from scnode_exchange.settings import client_key

log = logging.getLogger(__name__)
CRASH_POINTS = ("after_mark_sending", "after_send")


class LightningUnavailableError(Exception):
    """The Lightning API cannot answer now (the member may retry with the same key)."""


class LightningPaymentWorker:
    """Background work of payments: ``await worker.run(stop)``."""

    def __init__(
        self,
        service: LightningPaymentService,
        client: LightningApiClient,
        *,
        poll_seconds: float = 2.0,
        batch: int = 50,
        crash_at: str | None = None,
    ) -> None:
        if crash_at is not None and crash_at not in CRASH_POINTS:
            raise ValueError(f"crash_at must be one of {CRASH_POINTS}")
        self.service = service
        self.client = client
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.crash_at = crash_at
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Passes until ``stop``; a failing pass is logged and retried after the poll."""
        log.info("Lightning payment worker started")
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("Lightning payment pass failed; retrying")
                busy = 0
            if busy >= self.batch:
                continue
            self._wake.clear()
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
            try:
                await asyncio.wait(
                    waiters, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter
        log.info("Lightning payment worker stopped")

    async def run_once(self) -> int:
        """One pass (see the module doc); how many payments reached an outcome."""
        moved = 0
        for pid in await asyncio.to_thread(self.service.ids_in, "sending", self.batch):
            info = await asyncio.to_thread(self.service.get, pid)
            if info.state == "sending":
                moved += await self._reconcile(info)
        for pid in await asyncio.to_thread(self.service.ids_in, "reserved", self.batch):
            claimed = await asyncio.to_thread(self.service.claim_for_sending, pid)
            if claimed is None:
                continue
            self._crash_point("after_mark_sending")
            moved += await self._send(claimed)
        return moved

    async def _reconcile(self, info: PaymentInfo) -> int:
        assert info.send_key is not None
        try:
            record = await self.client.payment(info.send_key)
        except ChainApiNotFoundError:
            # never recorded by the API, so never sent: paying with the same key is safe
            return await self._send(info)
        except ChainApiError as exc:
            log.warning("Lightning payment %s: cannot ask the API (%s); later", info.id, exc)
            return 0
        return await self._apply(info, record)

    async def _send(self, info: PaymentInfo) -> int:
        assert info.send_key is not None
        try:
            record = await self.client.pay(
                member=str(info.member_id),
                idempotency_key=info.send_key,
                bolt11=info.bolt11,
                max_fee_msat=info.max_fee_sats * 1000,
            )
        except ChainApiAuthError as exc:
            log.error("Lightning payment %s: the API refused our key (%s); later", info.id, exc)
            return 0
        except ChainApiRequestError as exc:
            if exc.status == 404:  # no such route: a misconfigured URL, not a refusal
                log.error("Lightning payment %s: %s; later", info.id, exc)
                return 0
            # 409/422: the API recorded nothing under this key and sent nothing
            log.warning("Lightning payment %s refused by the API: %s (refunded)", info.id, exc)
            await asyncio.to_thread(self.service.record_failure, info.id, exc.detail)
            return 1
        except ChainApiError as exc:
            log.warning("Lightning payment %s: API unavailable (%s); will ask again", info.id, exc)
            return 0
        self._crash_point("after_send")
        return await self._apply(info, record)

    async def _apply(self, info: PaymentInfo, record: dict[str, Any]) -> int:
        state = record.get("state")
        if state == "complete":
            fee = record.get("fee_msat")
            if fee is None:
                sent = record.get("amount_sent_msat")
                fee = int(sent) - int(record.get("amount_msat") or 0) if sent is not None else 0
            done = await asyncio.to_thread(
                self.service.record_complete, info.id, int(fee), record.get("preimage")
            )
            log.info(
                "Lightning payment %s complete: %d sats + fee %s",
                info.id,
                done.amount_sats,
                done.fee_sats,
            )
            return 1
        if state == "failed":
            error = record.get("error") or {}
            reason = str(error.get("message") or "the payment failed")
            await asyncio.to_thread(self.service.record_failure, info.id, reason)
            log.info("Lightning payment %s failed: %s (refunded)", info.id, reason)
            return 1
        await asyncio.to_thread(self.service.record_api_state, info.id, str(state))
        return 0

    def _crash_point(self, step: str) -> None:
        """Test-only: die here without any clean-up, when told to (fault tests)."""
        if self.crash_at == step:
            log.warning("lightning pay_crash_at=%s: killing myself", step)
            os.kill(os.getpid(), signal.SIGKILL)


class LightningPayments:
    """What the member routes and the app's lifespan use: requests and the worker."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        client: LightningApiClient,
        policy: PaymentPolicy | None = None,
        *,
        key_prefix: str = "lnpay",
        poll_seconds: float = 2.0,
        crash_at: str | None = None,
        network: str | None = None,
    ) -> None:
        self.service = LightningPaymentService(sessions, policy, key_prefix=key_prefix)
        self.client = client
        self.worker = LightningPaymentWorker(
            self.service, client, poll_seconds=poll_seconds, crash_at=crash_at
        )
        self._network = network

    async def network(self) -> str:
        """The node's network (lightningd's ``getinfo``), asked once."""
        if self._network is None:
            try:
                info = await self.client.node()
            except ChainApiRetryableError as exc:
                raise LightningUnavailableError(str(exc)) from exc
            except ChainApiError as exc:
                raise LightningUnavailableError(f"the Lightning API refused: {exc}") from exc
            self._network = str(info["network"])
        return self._network

    async def pay(self, member_id: int, bolt11: str, idempotency_key: str) -> PaymentInfo:
        """Decode, check and reserve (or settle internally) a member's payment; the worker
        is woken to send an external one at once."""
        try:
            invoice = decode(bolt11)
        except InvoiceError as exc:
            raise PaymentRefusedError(exc.reason, exc.code) from None
        network = await self.network()
        info = await asyncio.to_thread(
            self.service.request_payment, member_id, idempotency_key, invoice, network
        )
        if info.state == "reserved":
            self.worker.wake()
        return info

    async def quote(self, member_id: int, bolt11: str) -> dict[str, Any]:
        """What paying ``bolt11`` would reserve, without reserving anything."""
        try:
            invoice = decode(bolt11)
        except InvoiceError as exc:
            raise PaymentRefusedError(exc.reason, exc.code) from None
        amount = self.service.check_invoice(invoice, await self.network())
        internal = await asyncio.to_thread(self._internal_payee, invoice.payment_hash)
        if internal is not None and internal == member_id:
            raise PaymentRefusedError("you cannot pay your own invoice", "own_invoice")
        fee = 0 if internal is not None else self.service.policy.max_fee(amount)
        used = await asyncio.to_thread(self.service.used_today, member_id)
        return {
            "payment_hash": invoice.payment_hash,
            "destination": invoice.payee,
            "description": invoice.description,
            "amount_msat": invoice.amount_msat,
            "amount_sats": amount,
            "max_fee_sats": fee,
            "max_total_sats": amount + fee,
            "expires_at": invoice.expires_at,
            "internal": internal is not None,
            "daily_limit_sats": self.service.policy.daily_limit_sats,
            "daily_used_sats": used,
        }

    def _internal_payee(self, payment_hash: str) -> int | None:
        with self.service.sessions() as session:
            found = session.scalar(
                select(LightningInvoice.member_id).where(
                    LightningInvoice.payment_hash == payment_hash
                )
            )
            return None if found is None else int(found)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.worker.run(stop)
        finally:
            await self.client.aclose()


__all__ = [
    "LightningPaymentWorker",
    "LightningPayments",
    "LightningUnavailableError",
    "PaymentConflictError",
]


def start_lightning_payments(app: Any, settings: Any, rt: Any) -> LightningPayments | None:
    """The payments the app runs in its lifespan when ``settings.lightning`` is set,
    published as ``app.state.lightning_payments``; None when Lightning is not configured."""
    conf = getattr(settings, "lightning", None)
    if conf is None:
        app.state.lightning_payments = None
        return None
    payments = LightningPayments(
        rt.sessions,
        LightningApiClient(conf.api_url, client_key(conf), timeout=120),
        PaymentPolicy(
            min_sats=conf.pay_min_sats,
            max_sats=conf.pay_max_sats,
            daily_limit_sats=conf.pay_daily_limit_sats,
            fee_floor_sats=conf.pay_fee_floor_sats,
            fee_ppm=conf.pay_fee_ppm,
        ),
        key_prefix=conf.pay_key_prefix,
        poll_seconds=conf.pay_poll_seconds,
        crash_at=conf.pay_crash_at,
    )
    app.state.lightning_payments = payments
    return payments
