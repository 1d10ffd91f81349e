"""Async client of the node's Lightning API (``scnode_lightning_api``).

The Lightning API serves its events journal the way the chain APIs do (``/v1/events/ws`` with
a resumable cursor, ``/v1/events/recent``), so this is the chain API client — its typed errors,
backoff and resumable event stream — plus the invoice routes.
"""

from __future__ import annotations

from typing import Any

from scnode_exchange.chainclient import ChainApiClient, _segment


class LightningApiClient(ChainApiClient):
    """Typed async client of the Lightning API (a key with the ``invoice`` scope)."""

    def __repr__(self) -> str:  # the key never appears
        return f"LightningApiClient({self.base_url!r})"

    async def create_invoice(
        self,
        *,
        member: str,
        idempotency_key: str,
        amount_msat: int,
        description: str,
        expiry_seconds: int,
    ) -> dict[str, Any]:
        """The member's invoice for this key (the same one on every call with the key)."""
        result: dict[str, Any] = await self.request(
            "POST",
            "/v1/invoices",
            {
                "member": member,
                "idempotency_key": idempotency_key,
                "amount_msat": amount_msat,
                "description": description,
                "expiry_seconds": expiry_seconds,
            },
        )
        return result

    async def invoice(self, payment_hash: str) -> dict[str, Any]:
        """lightningd's view of one invoice (status unpaid, paid or expired)."""
        result: dict[str, Any] = await self.request("GET", f"/v1/invoices/{_segment(payment_hash)}")
        return result

    async def paid_invoices(self, start: int, limit: int = 500) -> dict[str, Any]:
        """One page of paid invoices in lightningd's creation order (``next_start``, ``more``)."""
        result: dict[str, Any] = await self.request(
            "GET", "/v1/invoices", params={"status": "paid", "start": start, "limit": limit}
        )
        return result

    async def balance(self) -> dict[str, int]:
        """What the node holds in Lightning, in the chain wallet's shape so the solvency check
        counts it beside the on-chain wallet: ``trusted_sats`` = our side of the channel
        (``local_msat`` of ``GET /v1/status``, floored to whole sats; 0 without a channel).
        Needs the ``read`` scope besides ``invoice``."""
        status = await self.request("GET", "/v1/status")
        channel = status.get("channel") or {}
        return {"trusted_sats": int(channel.get("local_msat", 0)) // 1000}

    async def node(self) -> dict[str, Any]:
        """lightningd's ``getinfo`` essentials (``network`` among them); ``read`` scope."""
        result: dict[str, Any] = await self.request("GET", "/v1/node")
        return result

    async def pay(
        self, *, member: str, idempotency_key: str, bolt11: str, max_fee_msat: int
    ) -> dict[str, Any]:
        """Pay an invoice at most once per key (``pay`` scope): the payment record with
        ``state`` complete, pending or failed; the same request again answers the same record."""
        result: dict[str, Any] = await self.request(
            "POST",
            "/v1/payments",
            {
                "member": member,
                "idempotency_key": idempotency_key,
                "bolt11": bolt11,
                "max_fee_msat": max_fee_msat,
            },
        )
        return result

    async def payment(self, idempotency_key: str) -> dict[str, Any]:
        """The Lightning API's record of a payment by key (404: it never recorded one)."""
        result: dict[str, Any] = await self.request(
            "GET", f"/v1/payments/{_segment(idempotency_key)}"
        )
        return result
