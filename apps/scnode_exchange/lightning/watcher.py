"""Follows the Lightning API and credits paid invoices.

On every (re)start, and whenever the API says its journal no longer covers our cursor
(``resync``), it catches up from lightningd's own list (the Lightning API's ``listinvoices``):
each unpaid invoice of ours is looked up, and after a resync every paid invoice is read page by
page. Then it follows the events WebSocket from the stored cursor: ``invoice_paid`` credits,
``invoice_expired`` closes the row. A credit and the cursor after it commit together, so a
restart replays at most the event in flight — which finds the invoice credited already.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CollectorRegistry, Counter

from scnode_exchange.chainclient import ChainApiError, ChainApiNotFoundError
from scnode_exchange.lightning.client import LightningApiClient
from scnode_exchange.lightning.service import LightningDepositService

log = logging.getLogger(__name__)


class LightningDepositMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.credits = Counter(
            "scnode_exchange_lightning_deposits",
            "Lightning invoices credited to members",
            registry=registry,
        )
        self.credited_sats = Counter(
            "scnode_exchange_lightning_deposit_sats",
            "sats credited from Lightning invoices",
            registry=registry,
        )


class LightningDepositWatcher:
    def __init__(
        self,
        service: LightningDepositService,
        client: LightningApiClient,
        metrics: LightningDepositMetrics | None = None,
    ) -> None:
        self.service = service
        self.client = client
        self.metrics = metrics or LightningDepositMetrics(CollectorRegistry())

    async def run(self, stop: asyncio.Event) -> None:
        """Catch up, then follow the events until ``stop`` is set (retrying on trouble)."""
        while not stop.is_set():
            try:
                await self._run_once(stop)
            except ChainApiError as exc:
                log.warning("Lightning deposits: %s; retrying", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=5)

    async def _run_once(self, stop: asyncio.Event) -> None:
        cursor = self.service.cursor()
        if cursor is None:
            # first run: start at the journal's tip, the catch-up reads lightningd's list
            cursor = await self.client.tip_cursor()
            await self.catch_up(everything=True)
            self.service.set_cursor(cursor)
        else:
            await self.catch_up(everything=False)
        async for event in self.client.events(cursor, stop=stop):
            if event.kind == "resync":
                await self.catch_up(everything=True)
                continue
            if event.kind == "invoice_paid":
                self._count(self.service.credit(event.data, cursor=event.id).credited, event.data)
                continue
            if event.kind == "invoice_expired":
                self.service.expire(str(event.data.get("payment_hash")))
            self.service.set_cursor(event.id)

    def _count(self, credited: bool, data: dict[str, object]) -> None:
        if credited:
            self.metrics.credits.inc()
            self.metrics.credited_sats.inc(int(str(data.get("amount_received_msat") or 0)) // 1000)

    async def catch_up(self, *, everything: bool) -> None:
        """Credit what was paid while we were not listening."""
        for payment_hash in self.service.unpaid():
            try:
                invoice = await self.client.invoice(payment_hash)
            except ChainApiNotFoundError:
                continue  # deleted from lightningd (never paid: a paid one is kept)
            if invoice["status"] == "paid":
                self._count(self.service.credit(invoice).credited, invoice)
            elif invoice["status"] == "expired":
                self.service.expire(payment_hash)
        if not everything:
            return
        start = 0
        while True:
            page = await self.client.paid_invoices(start)
            for invoice in page["invoices"]:
                self._count(self.service.credit(invoice).credited, invoice)
            start = int(page["next_start"])
            if not page["more"]:
                return
