"""Lightning as a Service, deposits: a member's invoice from the node's Lightning API, credited
to the member's SATS balance — the same balance on-chain deposits credit — exactly once when
paid (see service.py), with a watcher that catches up from lightningd's list after any
restart (watcher.py)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.lightning.client import LightningApiClient
from scnode_exchange.lightning.service import (
    Credit,
    LightningDepositError,
    LightningDepositService,
)
from scnode_exchange.lightning.watcher import LightningDepositMetrics, LightningDepositWatcher
from scnode_exchange.settings import client_key

__all__ = [
    "Credit",
    "LightningApiClient",
    "LightningDepositError",
    "LightningDepositMetrics",
    "LightningDepositService",
    "LightningDepositWatcher",
    "LightningDeposits",
    "start_lightning",
]

_KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")
MAX_INVOICE_SATS = 10_000_000  # 0.1 BTC: a deposit limit per invoice; the channel is the bound


class LightningDeposits:
    """What the member routes and the app's lifespan use: invoices and the watcher."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        client: LightningApiClient,
        *,
        expiry_seconds: int = 3600,
        max_invoice_sats: int = MAX_INVOICE_SATS,
        metrics: LightningDepositMetrics | None = None,
    ) -> None:
        self.service = LightningDepositService(sessions)
        self.client = client
        self.watcher = LightningDepositWatcher(self.service, client, metrics=metrics)
        self.expiry_seconds = expiry_seconds
        self.max_invoice_sats = max_invoice_sats

    async def create_invoice(
        self, member_id: int, amount_sats: int, idempotency_key: str, description: str = ""
    ) -> dict[str, Any]:
        """The member's deposit invoice for this key: made once by the Lightning API (label
        ``<member id>:<key>``), recorded here; the same key gives the same invoice."""
        if not _KEY_RE.match(idempotency_key):
            raise LightningDepositError("idempotency_key must be 8-128 of [A-Za-z0-9_.:-]")
        if not 0 < amount_sats <= self.max_invoice_sats:
            raise LightningDepositError(
                f"amount_sats must be between 1 and {self.max_invoice_sats}"
            )
        invoice = await self.client.create_invoice(
            member=str(member_id),
            idempotency_key=idempotency_key,
            amount_msat=amount_sats * 1000,
            description=description,
            expiry_seconds=self.expiry_seconds,
        )
        self.service.record(member_id, idempotency_key, invoice, amount_sats)
        return {
            "payment_hash": invoice["payment_hash"],
            "bolt11": invoice["bolt11"],
            "amount_sats": amount_sats,
            "expires_at": invoice["expires_at"],
            "status": invoice["status"],
        }

    async def run(self, stop: asyncio.Event) -> None:
        """The watcher, until ``stop``; closes the client at the end."""
        try:
            await self.watcher.run(stop)
        finally:
            await self.client.aclose()


def start_lightning(app: Any, settings: Any, rt: Any) -> LightningDeposits | None:
    """The Lightning deposits the app runs in its lifespan when ``settings.lightning`` is set,
    published as ``app.state.lightning`` for the member routes; None when not configured."""
    conf = getattr(settings, "lightning", None)
    if conf is None:
        app.state.lightning = None
        return None
    # the watcher's series go on the app's registry (/metrics), created once per app
    metrics = getattr(app.state, "lightning_deposit_metrics", None)
    if metrics is None:
        metrics = LightningDepositMetrics(rt.metrics.registry)
        app.state.lightning_deposit_metrics = metrics
    deposits = LightningDeposits(
        rt.sessions,
        LightningApiClient(conf.api_url, client_key(conf)),
        expiry_seconds=conf.invoice_expiry_seconds,
        max_invoice_sats=conf.max_invoice_sats,
        metrics=metrics,
    )
    app.state.lightning = deposits
    return deposits
