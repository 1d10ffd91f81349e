"""A small async client of the stratum stats API's work endpoint (the payout split's input).

``GET /v1/stratum/work?start=&end=`` (``apps/scnode_stratum``) answers acknowledged shares and
accepted difficulty per worker in ``[start, end)``, attributed workers under ``workers`` and
the others under ``unattributed``. The exchange attributes work with its OWN registry, so both
lists are merged into one map worker name → accepted difficulty; the stats API's member
guess (worker-name prefix) is not used for money.

The API key is taken from a `scnode_core.keyfile.KeySource` on every request (a rotated key
file is followed without a restart); a 401 re-reads the file and, when it holds another key,
asks once more with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import httpx

from scnode_core.keyfile import KeySource, key_source


class StatsApiError(Exception):
    """The stats API could not be reached or answered something unusable."""


def work_from_json(data: Any) -> dict[str, float]:
    """Worker name → accepted difficulty from a ``/v1/stratum/work`` answer (refuses a
    malformed one rather than guessing)."""
    if not isinstance(data, dict):
        raise StatsApiError("work answer is not an object")
    out: dict[str, float] = {}
    for section in ("workers", "unattributed"):
        entries = data.get(section, {})
        if not isinstance(entries, dict):
            raise StatsApiError(f"{section!r} is not an object")
        for name, entry in entries.items():
            value = entry.get("accepted_difficulty") if isinstance(entry, dict) else None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise StatsApiError(f"worker {name!r} has no numeric accepted_difficulty")
            if not math.isfinite(value) or value < 0:
                raise StatsApiError(f"worker {name!r} has accepted_difficulty {value!r}")
            if name in out:
                raise StatsApiError(f"worker {name!r} listed twice")
            out[str(name)] = float(value)
    return out


class StratumWorkClient:
    """One stats API instance (one per translator: btc, azc)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | KeySource,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._key = key_source(api_key)
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)

    def __repr__(self) -> str:  # the key never appears
        return f"StratumWorkClient({str(self._http.base_url)!r})"

    async def _get(self, path: str, params: dict[str, int]) -> httpx.Response:
        key = self._key.current()
        response = await self._http.get(path, params=params, headers=_auth(key))
        if response.status_code == 401:
            fresh = self._key.refresh()
            if fresh != key:
                response = await self._http.get(path, params=params, headers=_auth(fresh))
        return response

    async def work(self, start: int, end: int) -> dict[str, float]:
        """Accepted difficulty per worker in ``[start, end)`` (Unix seconds)."""
        try:
            response = await self._get("/v1/stratum/work", {"start": start, "end": end})
        except httpx.HTTPError as exc:
            raise StatsApiError(f"stats API unreachable: {exc}") from exc
        if response.status_code != 200:
            raise StatsApiError(f"stats API answered {response.status_code}: {response.text[:200]}")
        try:
            data = response.json()
        except ValueError as exc:
            raise StatsApiError("stats API answered no JSON") from exc
        return work_from_json(data)

    async def aclose(self) -> None:
        await self._http.aclose()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class StatsWorkSource:
    """The router's ``work_source``: pool → that pool's stats API client."""

    def __init__(self, clients: Mapping[str, StratumWorkClient]) -> None:
        self.clients = dict(clients)

    async def __call__(self, pool: str, start: int, end: int) -> Mapping[str, float]:
        client = self.clients.get(pool)
        if client is None:
            raise StatsApiError(f"no stats API configured for pool {pool}")
        return await client.work(start, end)

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()
