"""Cross-check of worker attribution with the translator's monitoring HTTP API (sv2-apps
``monitoring_address``): ``/api/v1/sv1/clients`` names each SV1 client's channel and user name.

The log stays the source of shares (it always works and survives restarts); the monitoring API
only corrects which worker a channel belongs to when the FIFO guess from the debug log was
wrong. Nothing here is required: without ``SCNODE_STRATUM_API_MONITORING_URL`` it is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import aiohttp

from scnode_stratum.tailer import LogTailer

log = logging.getLogger(__name__)
PAGE = 100


class MonitoringCrossCheck:
    def __init__(self, url: str, tailer: LogTailer, interval: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.tailer = tailer
        self.interval = interval
        self.up = False
        self.checks = 0
        self.corrections = 0
        self.last_ok: float | None = None
        self._stop = asyncio.Event()

    async def fetch_clients(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            async with session.get(
                f"{self.url}/api/v1/sv1/clients", params={"offset": offset, "limit": PAGE}
            ) as response:
                response.raise_for_status()
                page = await response.json()
            batch = page.get("items") or []
            items += batch
            offset += len(batch)
            if not batch or offset >= int(page.get("total", 0)):
                return items

    async def check_once(self, session: aiohttp.ClientSession) -> int:
        clients = await self.fetch_clients(session)
        mapping = {
            int(c["channel_id"]): str(c["sv1_username"])
            for c in clients
            if c.get("channel_id") is not None and c.get("sv1_username")
        }
        changed = await asyncio.to_thread(self.tailer.apply_attribution, mapping)
        self.checks += 1
        self.corrections += changed
        self.up = True
        self.last_ok = time.time()
        if changed:
            log.warning("monitoring API corrected the worker of %d channel(s)", changed)
        return changed

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self._stop.is_set():
                try:
                    await self.check_once(session)
                except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
                    self.up = False
                    log.info("translator monitoring API not answering: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.interval)

    def stop(self) -> None:
        self._stop.set()
