"""The mining page: the member's registered workers with their state, hashrate and last
share, a hashrate histogram, the member's payouts and how to connect a miner.

Which workers are the member's comes from the **exchange's registry** (``/v1/mining/workers``:
the same one the payout split uses), never from the stats API's name-prefix guess. Their
numbers come from each pool's stratum stats API (``SCNODE_DASHBOARD_STRATUM_APIS``, a key with
the ``read`` scope): ``/v1/stratum/workers`` for the state and hashrate, ``/v1/stratum/hashrate``
per worker for the histogram. A stats API that is not configured or does not answer leaves
its workers listed as "no data" (the page still renders).

Worker states are upstream's: **ok** (last share ≤ 90 s ago), **low** (≤ 300 s), **off**
(≤ 1800 s), else **dis**. Miners connect to the node's translators: Stratum V1 on port 3333
(BTC) and 3336 (AZC), user = the registered worker name.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from scnode_dashboard.app import MemberDep, MemberPostDep, PageError
from scnode_dashboard.exchange import ExchangeError
from scnode_dashboard.pages import tools, unavailable
from scnode_dashboard.settings import DashboardSettings
from scnode_stratum.app import worker_state  # upstream's thresholds, one copy

POOLS = {"btc": ("Bitcoin", 3333), "azc": ("AZCoin", 3336)}
HISTOGRAM_WINDOW, HISTOGRAM_BUCKET = "6h", "15m"
HISTOGRAM_WORKERS = 20  # workers summed into the histogram (one stats call each)
STATS_TIMEOUT = 3.0


def hashrate_text(hps: float) -> str:
    """Hashes per second with a unit (H/s … EH/s)."""
    for unit in ("H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s"):
        if abs(hps) < 1000:
            return f"{hps:,.1f} {unit}" if unit != "H/s" else f"{hps:,.0f} {unit}"
        hps /= 1000
    return f"{hps:,.1f} EH/s"


def _unix(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for the stats API clients: httpx would build (and load the CA
    bundle into) a new one for every client, i.e. for every page view."""
    return ssl.create_default_context()


@dataclass
class StatsApi:
    pool: str
    url: str
    key: str


def stats_apis(settings: DashboardSettings) -> dict[str, StatsApi]:
    """The configured stats APIs per pool (a key file is read on each use: rotation works)."""
    out = {}
    for pool, conf in settings.stratum_apis.items():
        if pool not in POOLS or not conf.get("url"):
            continue
        key = conf.get("key", "")
        if not key and conf.get("key_file"):
            try:
                key = Path(conf["key_file"]).read_text().strip()
            except OSError:
                key = ""
        out[pool] = StatsApi(pool, conf["url"].rstrip("/"), key)
    return out


async def _stats(http: httpx.AsyncClient, api: StatsApi, path: str, **params: Any) -> Any:
    reply = await http.get(
        api.url + path, params=params, headers={"Authorization": f"Bearer {api.key}"}
    )
    reply.raise_for_status()
    return reply.json()


def histogram_svg(buckets: list[tuple[int, float]]) -> dict[str, Any]:
    """Bars for the template's inline SVG (attributes only: the CSP forbids inline styles)."""
    top = max((v for _, v in buckets), default=0.0)
    width, height, gap = 600, 140, 2
    slot = width / max(len(buckets), 1)
    bars = []
    for i, (start, value) in enumerate(buckets):
        h = 0.0 if top <= 0 else value / top * (height - 20)
        bars.append(
            {
                "x": round(i * slot + gap / 2, 1),
                "y": round(height - h, 1),
                "w": round(max(slot - gap, 1), 1),
                "h": round(h, 1),
                "label": time.strftime("%H:%M", time.gmtime(start)),
                "value": hashrate_text(value),
            }
        )
    return {"bars": bars, "top": hashrate_text(top), "width": width, "height": height}


def build_router() -> APIRouter:
    """``GET /mining``, ``POST /mining/workers`` (register a worker name)."""
    router = APIRouter()

    async def page(ctx: Any, request: Request, status: int = 200, **extra: Any) -> Response:
        pages = tools(request)
        settings: DashboardSettings = request.app.state.settings
        token = await pages.exchange_token(ctx)
        try:
            registered = (await pages.exchange.get(token, "/v1/mining/workers"))["workers"]
            payouts = (await pages.exchange.get(token, "/v1/mining/payouts", limit=25))["payouts"]
        except ExchangeError as exc:
            if exc.status == 404:
                raise PageError(404, "Mining is not set up on this node.") from exc
            raise PageError(503, unavailable(exc)) from exc
        apis = stats_apis(settings)
        now = time.time()
        live: dict[tuple[str, str], dict[str, Any]] = {}
        missing: set[str] = set()
        series: dict[int, float] = {}
        async with httpx.AsyncClient(timeout=STATS_TIMEOUT, verify=tls_context()) as http:

            async def pool_workers(api: StatsApi) -> None:
                try:
                    got = await _stats(http, api, "/v1/stratum/workers")
                except (httpx.HTTPError, ValueError):
                    missing.add(api.pool)
                    return
                for w in got.get("workers", []):
                    live[(api.pool, str(w.get("worker")))] = w

            async def worker_series(api: StatsApi, name: str) -> None:
                try:
                    got = await _stats(
                        http, api, "/v1/stratum/hashrate", window=HISTOGRAM_WINDOW,
                        bucket=HISTOGRAM_BUCKET, worker=name,
                    )  # fmt: skip
                except (httpx.HTTPError, ValueError):
                    return
                for b in got.get("buckets", []):
                    start = int(b["start_unix"])
                    series[start] = series.get(start, 0.0) + float(b.get("hashrate_hps", 0.0))

            await asyncio.gather(*(pool_workers(api) for api in apis.values()))
            mine = [w for w in registered if w["pool"] in apis][:HISTOGRAM_WORKERS]
            await asyncio.gather(*(worker_series(apis[w["pool"]], w["name"]) for w in mine))
        rows = []
        for w in registered:
            pool, name = w["pool"], w["name"]
            stats = live.get((pool, name))
            last_share = _unix(stats.get("last_share")) if stats else None
            hps = float(stats["windows"]["15m"]["hashrate_hps"]) if stats else 0.0
            rows.append(
                {
                    "pool": pool,
                    "name": name,
                    "has_data": pool in apis and pool not in missing,
                    "state": worker_state(last_share, now),
                    "last_share": last_share,
                    "hashrate": hashrate_text(hps),
                    "accepted_24h": int(stats["windows"]["24h"]["shares_accepted"]) if stats else 0,
                }
            )
        host = settings.stratum_host or urlsplit(settings.public_url).hostname or "your-node"
        return pages.render(
            ctx, "mining.html", status, workers=rows, payouts=payouts, pools=POOLS, host=host,
            histogram=histogram_svg(sorted(series.items())) if series else None,
            unavailable=sorted(missing), configured=sorted(apis), **extra,
        )  # fmt: skip

    @router.get("/mining")
    async def mining(ctx: MemberDep, request: Request) -> Response:
        return await page(ctx, request)

    @router.post("/mining/workers")
    async def register(
        ctx: MemberPostDep,
        request: Request,
        pool: Annotated[str, Form(max_length=8)],
        name: Annotated[str, Form(min_length=1, max_length=128)],
    ) -> Response:
        """Register a worker name for the member (the exchange refuses one another member
        has)."""
        pages = tools(request)
        token = await pages.exchange_token(ctx)
        if pool not in POOLS:
            return await page(ctx, request, 422, error="Choose BTC or AZC.")
        try:
            await pages.exchange.post(
                token, "/v1/mining/workers", {"pool": pool, "name": name.strip()}
            )
        except ExchangeError as exc:
            if exc.status == 0 or exc.status >= 500:
                raise PageError(503, unavailable(exc)) from exc
            return await page(ctx, request, 422, error=f"Not registered: {exc.detail}")
        return pages.redirect(ctx, "/mining")

    return router
