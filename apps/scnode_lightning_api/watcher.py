"""Turns lightningd's state changes into journalled events.

cl-zmq messages only *wake* the reconciler: they carry no sequence number, so a lost message
(HWM, this API restarting, the plugin not binding) is never noticed from the stream itself.
The reconciler reads lightningd's lists from persisted cursors — ``listinvoices`` by
``updated_index`` for paid/expired invoices, ``listsendpays`` by ``updated_index`` for payments,
``listpeerchannels`` against the last channel states published — on every wake-up and every
``poll_seconds``. Events carry dedupe keys, so each fact is published exactly once even when a
restart or a poll sees it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import zmq
import zmq.asyncio

from scnode_core.eventjournal import EventBus
from scnode_core.lightning_rpc import LightningClient, LightningRpcError, LightningUnavailableError
from scnode_lightning_api.metrics import LightningMetrics
from scnode_lightning_api.service import LightningService, invoice_json
from scnode_lightning_api.store import LightningApiStore

log = logging.getLogger(__name__)
PAGE = 500
WAKE_TOPICS = {
    "invoice_payment",
    "sendpay_success",
    "sendpay_failure",
    "channel_opened",
    "connect",
    "disconnect",
}


class LightningWatcher:
    def __init__(
        self,
        rpc: LightningClient,
        store: LightningApiStore,
        bus: EventBus,
        service: LightningService,
        metrics: LightningMetrics,
        *,
        zmq_endpoints: list[str],
        poll_seconds: float = 5.0,
        event_retention: int = 100_000,
    ) -> None:
        self.rpc = rpc
        self.store = store
        self.bus = bus
        self.service = service
        self.metrics = metrics
        self._endpoints = sorted(set(zmq_endpoints))
        self._poll = poll_seconds
        self._retention = event_retention
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._ctx: zmq.asyncio.Context | None = None
        self.last_error: str | None = None
        self.passes = 0

    async def start(self) -> None:
        if self._endpoints:
            self._ctx = zmq.asyncio.Context()
            for endpoint in self._endpoints:
                self._tasks.append(
                    asyncio.create_task(self._zmq_loop(endpoint), name=f"cl-zmq {endpoint}")
                )
        self._tasks.append(asyncio.create_task(self._loop(), name="lightning reconcile"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    def poke(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.reconcile()
                self.last_error = None
                self.metrics.up.set(1)
            except (LightningUnavailableError, LightningRpcError) as exc:
                self.last_error = str(exc)
                self.metrics.up.set(0)
                log.warning("reconcile failed, will retry: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)

    async def _zmq_loop(self, endpoint: str) -> None:
        assert self._ctx is not None
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(endpoint)
        try:
            while True:
                frames = await sock.recv_multipart()
                # cl-zmq: one frame "<topic>\0<json>" (txZMQ also accepts [topic, body])
                if len(frames) == 1:
                    topic_raw, _, body = frames[0].partition(b"\0")
                elif len(frames) == 2:
                    topic_raw, body = frames
                else:
                    log.warning("ignoring a cl-zmq message of %d frames", len(frames))
                    continue
                topic = topic_raw.decode("utf-8", errors="replace")
                self.metrics.zmq_messages.labels(topic=topic).inc()
                if topic == "warning":
                    self._on_warning(body)
                elif topic in ("connect", "disconnect"):
                    self._on_peer(topic, body)
                if topic in WAKE_TOPICS:
                    self.poke()
        finally:
            sock.close(linger=0)

    def _on_warning(self, body: bytes) -> None:
        try:
            warning = json.loads(body).get("warning", {})
        except (ValueError, AttributeError):
            return
        self.bus.publish(
            "node_warning",
            {
                "level": warning.get("level"),
                "source": warning.get("source"),
                "message": warning.get("log"),
                "time": warning.get("time"),
            },
        )

    def _on_peer(self, topic: str, body: bytes) -> None:
        """Peer (dis)connections as they happen: a reconnect may follow before the next pass
        reads the channels, so these come from the message itself (best effort — cl-zmq may
        drop messages; the channel_state events from the reconciler are the durable view)."""
        try:
            peer = json.loads(body).get(topic, {})
        except (ValueError, AttributeError):
            return
        data: dict[str, Any] = {"peer_id": peer.get("id")}
        if topic == "connect":
            data["direction"] = peer.get("direction")
        self.bus.publish("peer_connected" if topic == "connect" else "peer_disconnected", data)

    # -- one pass --------------------------------------------------------------------------
    async def reconcile(self) -> None:
        await self._invoices()
        await self.service.reconcile_pending()
        await self._sendpays()
        await self._channels()
        for state in ("pending", "complete", "failed"):
            self.metrics.payments.labels(state=state).set(self.store.payment_counts().get(state, 0))
        self.passes += 1
        if self.passes % 100 == 0:
            self.store.events.prune(self._retention)

    async def _invoices(self) -> None:
        cursor = int(self.store.get_state("invoices_updated_index") or 0)
        while True:
            page = (
                await self.rpc.call("listinvoices", index="updated", start=cursor + 1, limit=PAGE)
            )["invoices"]
            for inv in page:
                index = int(inv["updated_index"])
                with self.store.transaction():
                    self._invoice_event(inv)
                    self.store.set_state("invoices_updated_index", str(index))
                cursor = index
            if len(page) < PAGE:
                return

    def _invoice_event(self, inv: dict[str, Any]) -> None:
        data = invoice_json(inv)
        data.pop("bolt11", None)
        data.pop("preimage", None)
        if inv["status"] == "paid":
            self.bus.publish("invoice_paid", data, dedupe=f"invoice_paid:{inv['payment_hash']}")
        elif inv["status"] == "expired":
            self.bus.publish(
                "invoice_expired", data, dedupe=f"invoice_expired:{inv['payment_hash']}"
            )

    async def _sendpays(self) -> None:
        """Payments made outside this API (the owner's lightning-cli) settle too: announce
        them, so the dashboards see every payment that left the node."""
        cursor = int(self.store.get_state("sendpays_updated_index") or 0)
        while True:
            page = (
                await self.rpc.call("listsendpays", index="updated", start=cursor + 1, limit=PAGE)
            )["payments"]
            for part in page:
                index = int(part["updated_index"])
                with self.store.transaction():
                    if (
                        part.get("status") == "complete"
                        and self.store.live_payment_for(part["payment_hash"]) is None
                    ):
                        self.bus.publish(
                            "payment_settled",
                            {
                                "idempotency_key": None,
                                "member": None,
                                "payment_hash": part["payment_hash"],
                                "destination": part.get("destination"),
                                "amount_msat": part.get("amount_msat"),
                                "amount_sent_msat": part.get("amount_sent_msat"),
                                "state": "complete",
                            },
                            dedupe=f"payment_settled:hash:{part['payment_hash']}",
                        )
                    self.store.set_state("sendpays_updated_index", str(index))
                cursor = index
            if len(page) < PAGE:
                return

    async def _channels(self) -> None:
        channels = (await self.rpc.call("listpeerchannels"))["channels"]
        known = self.store.channels()
        for ch in channels:
            channel_id = str(ch.get("channel_id"))
            now = (str(ch.get("peer_id")), str(ch.get("state")), bool(ch.get("peer_connected")))
            before = known.get(channel_id)
            if before == now:
                continue
            total = int(ch.get("total_msat", 0))
            local = int(ch.get("to_us_msat", 0))
            with self.store.transaction():
                self.bus.publish(
                    "channel_state",
                    {
                        "channel_id": channel_id,
                        "short_channel_id": ch.get("short_channel_id"),
                        "peer_id": now[0],
                        "state": now[1],
                        "previous_state": before[1] if before else None,
                        "peer_connected": now[2],
                        "local_msat": local,
                        "remote_msat": total - local,
                    },
                )
                self.store.set_channel(channel_id, *now)
        main = self.service.main_channel(list(channels))
        if main is not None:
            total = int(main.get("total_msat", 0))
            local = int(main.get("to_us_msat", 0))
            self.metrics.channel_msat.labels(side="local").set(local)
            self.metrics.channel_msat.labels(side="remote").set(total - local)
            self.metrics.channel_msat.labels(side="spendable").set(
                int(main.get("spendable_msat", 0))
            )
            self.metrics.channel_msat.labels(side="receivable").set(
                int(main.get("receivable_msat", 0))
            )
            self.metrics.peer_connected.set(1 if main.get("peer_connected") else 0)
            self.metrics.channel_normal.set(1 if main.get("state") == "CHANNELD_NORMAL" else 0)
        else:
            self.metrics.peer_connected.set(0)
            self.metrics.channel_normal.set(0)
