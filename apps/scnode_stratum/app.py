"""App factory of the stratum stats API: ``create_app(settings)``; nothing runs at import.

Every route except ``/healthz`` and ``/version`` needs an API key with the ``read`` scope
(``Authorization: Bearer <key>`` or ``X-API-Key``), exactly as the chain API: 401 without or
with an unknown key, 403 without the scope. The WebSocket closes with 4401/4403.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, WebSocket
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.websockets import WebSocketDisconnect

from scnode_core.apikeys import Principal
from scnode_core.auth import require_scope
from scnode_core.keyring import KeyRing
from scnode_core.openapi import DB_INT_MAX, document_error_details
from scnode_stratum import __version__
from scnode_stratum.logtail import read_tail_records
from scnode_stratum.monitoring import MonitoringCrossCheck
from scnode_stratum.parser import TranslatorLogParser
from scnode_stratum.settings import StratumApiSettings
from scnode_stratum.store import HASHES_PER_DIFF1, WINDOWS, StratumStore
from scnode_stratum.tailer import LogTailer

COMPAT_WINDOWS = {"15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 7 * 86400}
COMPAT_BUCKETS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600}
HIST_WINDOWS = {**WINDOWS, "6h": 21600, "7d": 7 * 86400}
HIST_BUCKETS = {"10s": 10, **COMPAT_BUCKETS}
# a time range's bound: 2**40 s is ~35 000 years, and its minute fits a database integer (an
# unbounded float such as 1.8e308 overflowed the minute-bucket query: a 500; NaN and inf too)
MAX_UNIX_SECONDS = 2**40


def worker_state(last_share: float | None, now: float) -> str:
    """Upstream's worker states: ok (last share ≤ 90 s), low (≤ 300 s), off (≤ 1800 s), dis."""
    if last_share is None:
        return "dis"
    age = now - last_share
    if age <= 90:
        return "ok"
    if age <= 300:
        return "low"
    if age <= 1800:
        return "off"
    return "dis"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


class Feed:
    """Wakes WebSocket clients when the tailer committed new events (thread-safe)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.cond: asyncio.Condition | None = None
        self.last_id = 0

    def bind(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.cond = asyncio.Condition()

    def committed(self, last_id: int) -> None:
        if self.loop is None or last_id == self.last_id:
            return
        self.last_id = last_id
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._notify()))

    async def _notify(self) -> None:
        assert self.cond is not None
        async with self.cond:
            self.cond.notify_all()

    async def wait(self, seconds: float) -> None:
        assert self.cond is not None
        async with self.cond:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.cond.wait(), seconds)


class StratumCollector(Collector):
    def __init__(
        self,
        settings: StratumApiSettings,
        store: StratumStore,
        tailer: LogTailer,
        cross_check: MonitoringCrossCheck | None,
    ) -> None:
        self.settings, self.store, self.tailer = settings, store, tailer
        self.cross_check = cross_check

    def collect(self) -> Iterator[Any]:
        t = self.tailer
        lines = CounterMetricFamily(
            "scnode_stratum_log_lines", "translator log lines read", labels=["instance"]
        )
        lines.add_metric([self.settings.name], t.lines_total)
        yield lines
        kinds = CounterMetricFamily(
            "scnode_stratum_log_records",
            "log records parsed since start, by kind (unknown = not understood)",
            labels=["instance", "kind"],
        )
        for kind, n in sorted(dict(t.parser.counters.by_kind).items()):
            kinds.add_metric([self.settings.name, kind], n)
        kinds.add_metric([self.settings.name, "unknown"], t.parser.counters.unknown)
        yield kinds
        lag = GaugeMetricFamily(
            "scnode_stratum_tail_lag_bytes", "bytes of the log not yet read", labels=["instance"]
        )
        lag.add_metric([self.settings.name], t.lag_bytes())
        yield lag
        age = GaugeMetricFamily(
            "scnode_stratum_last_line_age_seconds",
            "age of the newest stored log line's timestamp",
            labels=["instance"],
        )
        if t.last_line_ts is not None:
            age.add_metric([self.settings.name], max(0.0, time.time() - t.last_line_ts))
        yield age
        for name, value in (
            ("scnode_stratum_log_rotations", t.rotations),
            ("scnode_stratum_log_truncations", t.truncations),
            ("scnode_stratum_log_gaps", t.gaps),
        ):
            fam = CounterMetricFamily(name, name.replace("_", " "), labels=["instance"])
            fam.add_metric([self.settings.name], value)
            yield fam
        rate = GaugeMetricFamily(
            "scnode_stratum_hashrate_hps",
            "estimated hashrate: accepted difficulty * 2^32 / window",
            labels=["instance", "window", "worker"],
        )
        shares = GaugeMetricFamily(
            "scnode_stratum_window_shares",
            "shares in the window",
            labels=["instance", "window", "worker", "result"],
        )
        now = time.time()
        for window, seconds in WINDOWS.items():
            per_worker = self.store.totals(now - seconds)
            total_diff = 0.0
            for worker, entry in per_worker.items():
                h = entry["diff_sum"] * HASHES_PER_DIFF1 * self.settings.work_scale / seconds
                total_diff += entry["diff_sum"]
                rate.add_metric([self.settings.name, window, worker], h)
                for result in ("submitted", "accepted", "rejected"):
                    shares.add_metric([self.settings.name, window, worker, result], entry[result])
            rate.add_metric(
                [self.settings.name, window, ""],
                total_diff * HASHES_PER_DIFF1 * self.settings.work_scale / seconds,
            )
        yield rate
        yield shares
        if self.cross_check is not None:
            up = GaugeMetricFamily(
                "scnode_stratum_monitoring_up",
                "1 when the translator's monitoring API answered the last cross-check",
                labels=["instance"],
            )
            up.add_metric([self.settings.name], 1 if self.cross_check.up else 0)
            yield up
            fixes = CounterMetricFamily(
                "scnode_stratum_attribution_corrections",
                "channels whose worker the monitoring API corrected",
                labels=["instance"],
            )
            fixes.add_metric([self.settings.name], self.cross_check.corrections)
            yield fixes


def _ws_token(websocket: WebSocket) -> str | None:
    auth = websocket.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return websocket.headers.get("x-api-key")


def create_app(settings: StratumApiSettings) -> FastAPI:
    keys = KeyRing(settings.api_keys_file)
    store = StratumStore(settings.state_db, settings.member_separator)
    feed = Feed()
    tailer = LogTailer(
        settings.log_file,
        store,
        TranslatorLogParser(settings.member_separator),
        poll_interval=settings.poll_interval,
        compact_interval=settings.compact_interval_seconds,
        raw_retention=settings.raw_retention_seconds,
        on_commit=feed.committed,
    )
    cross_check = (
        MonitoringCrossCheck(settings.monitoring_url, tailer, settings.monitoring_interval)
        if settings.monitoring_url
        else None
    )
    registry = CollectorRegistry()
    registry.register(StratumCollector(settings, store, tailer, cross_check))
    scale = settings.work_scale

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        feed.bind()
        task = asyncio.create_task(tailer.run())
        checker = asyncio.create_task(cross_check.run()) if cross_check else None
        try:
            yield
        finally:
            if cross_check is not None and checker is not None:
                cross_check.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await checker
            tailer.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            store.close()

    app = FastAPI(
        title=f"SC Node stratum stats API ({settings.name})",
        version=__version__,
        lifespan=lifespan,
        docs_url=None if settings.environment == "production" else "/docs",
        redoc_url=None,
    )
    document_error_details(app)
    app.state.store = store
    app.state.tailer = tailer
    read = Depends(require_scope(keys, "read"))

    def stats(entry: dict[str, float] | None, seconds: int) -> dict[str, Any]:
        entry = entry or {"submitted": 0, "accepted": 0, "rejected": 0, "diff_sum": 0.0}
        return {
            "shares_submitted": int(entry["submitted"]),
            "shares_accepted": int(entry["accepted"]),
            "shares_rejected": int(entry["rejected"]),
            "accepted_difficulty": entry["diff_sum"],
            "hashrate_hps": entry["diff_sum"] * HASHES_PER_DIFF1 * scale / seconds,
        }

    def windows_by_worker(
        worker: str | None = None, member: str | None = None
    ) -> dict[str, dict[str, dict[str, float]]]:
        now = time.time()
        return {w: store.totals(now - s, worker, member) for w, s in WINDOWS.items()}

    def merged(per: dict[str, dict[str, float]], names: list[str]) -> dict[str, float]:
        out = {"submitted": 0.0, "accepted": 0.0, "rejected": 0.0, "diff_sum": 0.0}
        for name in names:
            for k, v in per.get(name, {}).items():
                out[k] += v
        return out

    def worker_json(
        w: dict[str, Any], wins: dict[str, dict[str, dict[str, float]]], now: float
    ) -> dict[str, Any]:
        return {
            **w,
            "first_seen": _iso(w["first_seen"]),
            "last_seen": _iso(w["last_seen"]),
            "last_share": _iso(w["last_share"]),
            "state": worker_state(w["last_share"], now),
            "windows": {
                name: stats(wins[name].get(w["worker"]), WINDOWS[name]) for name in WINDOWS
            },
        }

    # -- health and metrics ---------------------------------------------------------------------
    @app.get("/healthz", tags=["health"])
    async def healthz() -> JSONResponse:
        exists = settings.log_file.exists()
        ok = tailer.running and exists
        body = {
            "status": "ok" if ok else "degraded",
            "tailer_running": tailer.running,
            "log_file": str(settings.log_file),
            "log_file_exists": exists,
            "lag_bytes": tailer.lag_bytes(),
            "lines": tailer.lines_total,
            "last_line_ts": _iso(tailer.last_line_ts),
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/version", tags=["health"])
    async def version() -> dict[str, str]:
        return {"version": __version__, "instance": settings.name}

    @app.get("/metrics", include_in_schema=False)
    async def metrics(_: Principal = read) -> Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    # -- our REST API -----------------------------------------------------------------------------
    @app.get("/v1/stratum/pool")
    async def pool(_: Principal = read) -> dict[str, Any]:
        wins = windows_by_worker()
        workers = store.workers()
        return {
            "instance": settings.name,
            "workers": len(workers),
            "workers_connected": sum(1 for w in workers if w["connected"]),
            "windows": {
                name: stats(merged(wins[name], list(wins[name])), WINDOWS[name]) for name in WINDOWS
            },
            "as_of": _iso(time.time()),
        }

    @app.get("/v1/stratum/workers")
    async def workers(member: str | None = None, _: Principal = read) -> dict[str, Any]:
        wins = windows_by_worker(member=member)
        now = time.time()
        return {"workers": [worker_json(w, wins, now) for w in store.workers(member)]}

    @app.get("/v1/stratum/workers/{worker}")
    async def worker(worker: str, _: Principal = read) -> dict[str, Any]:
        found = [w for w in store.workers() if w["worker"] == worker]
        if not found:
            raise HTTPException(404, detail=f"unknown worker {worker!r}")
        return worker_json(found[0], windows_by_worker(worker=worker), time.time())

    def member_json(member: str, names: list[str], wins: dict[str, Any]) -> dict[str, Any]:
        return {
            "member": member,
            "workers": names,
            "windows": {name: stats(merged(wins[name], names), WINDOWS[name]) for name in WINDOWS},
        }

    @app.get("/v1/stratum/members")
    async def members(_: Principal = read) -> dict[str, Any]:
        by_member: dict[str, list[str]] = {}
        unattributed: list[str] = []
        for w in store.workers():
            if w["member"] is None:
                unattributed.append(w["worker"])
            else:
                by_member.setdefault(w["member"], []).append(w["worker"])
        wins = windows_by_worker()
        return {
            "members": [member_json(m, names, wins) for m, names in sorted(by_member.items())],
            "unattributed_workers": unattributed,
        }

    @app.get("/v1/stratum/members/{member}")
    async def member(member: str, _: Principal = read) -> dict[str, Any]:
        names = [w["worker"] for w in store.workers(member)]
        if not names:
            raise HTTPException(404, detail=f"no worker of member {member!r}")
        return member_json(member, names, windows_by_worker(member=member))

    def histogram(
        window_s: int, bucket_s: int, worker: str | None, member: str | None
    ) -> list[dict[str, Any]]:
        now = time.time()
        first = int((now - window_s) // bucket_s) * bucket_s + bucket_s
        data = store.series(first, bucket_s, worker, member)
        out = []
        for start in range(first, int(now) + 1, bucket_s):
            entry = data.get(start)
            s = stats(entry, bucket_s)
            out.append({"start": _iso(start), "start_unix": start, **s})
        return out

    @app.get("/v1/stratum/work")
    async def work(
        start: float = Query(ge=0, le=MAX_UNIX_SECONDS, description="Unix seconds, inclusive"),
        end: float | None = Query(
            default=None, ge=0, le=MAX_UNIX_SECONDS, description="Unix seconds, exclusive; now"
        ),
        _: Principal = read,
    ) -> dict[str, Any]:
        """Acknowledged work per worker and member in a time range (the payout split's input:
        DESIGN §8). Rows older than the raw retention count by their minute."""
        stop = time.time() if end is None else end
        if stop <= start:
            raise HTTPException(422, detail="end must be after start")
        per = store.totals(start, end=stop)
        members_of = {w["worker"]: w["member"] for w in store.workers()}
        workers_out: dict[str, Any] = {}
        members_out: dict[str, dict[str, Any]] = {}
        unattributed: dict[str, Any] = {}
        for name, entry in sorted(per.items()):
            item = {
                "shares_accepted": int(entry["accepted"]),
                "accepted_difficulty": entry["diff_sum"],
                "shares_rejected": int(entry["rejected"]),
            }
            owner = members_of.get(name)
            if owner is None:
                unattributed[name] = item
                continue
            workers_out[name] = {**item, "member": owner}
            total = members_out.setdefault(
                owner, {"shares_accepted": 0, "accepted_difficulty": 0.0, "shares_rejected": 0}
            )
            for key in total:
                total[key] += item[key]
        return {
            "start": start,
            "end": stop,
            "workers": workers_out,
            "members": members_out,
            "unattributed": unattributed,
        }

    @app.get("/v1/stratum/hashrate")
    async def hashrate(
        window: Literal["1m", "15m", "1h", "6h", "24h", "7d"] = "1h",
        bucket: Literal["10s", "1m", "5m", "15m", "1h"] = "1m",
        worker: str | None = None,
        member: str | None = None,
        _: Principal = read,
    ) -> dict[str, Any]:
        window_s, bucket_s = HIST_WINDOWS[window], HIST_BUCKETS[bucket]
        if window_s // bucket_s > 2000:
            raise HTTPException(422, detail="too many buckets: pick a larger bucket")
        return {
            "window": window,
            "bucket": bucket,
            "worker": worker,
            "member": member,
            "unit": "hps",
            "buckets": histogram(window_s, bucket_s, worker, member),
        }

    @app.get("/v1/stratum/events")
    async def events(
        cursor: int = Query(default=0, ge=0, le=DB_INT_MAX),
        limit: int = Query(default=500, ge=1, le=5000),
        _: Principal = read,
    ) -> dict[str, Any]:
        items = store.events_after(cursor, limit)
        return {"events": items, "cursor": items[-1]["id"] if items else cursor}

    @app.websocket("/v1/stratum/ws")
    async def live(
        websocket: WebSocket, cursor: int | None = None, kinds: str | None = None
    ) -> None:
        token = _ws_token(websocket)
        principal = keys().authenticate(token) if token else None
        if principal is None or "read" not in principal.scopes:
            await websocket.close(code=4401 if principal is None else 4403)
            return
        await websocket.accept()
        wanted = set(kinds.split(",")) if kinds else None
        position = store.last_event_id() if cursor is None else cursor
        oldest = store.oldest_event_id()
        if cursor is not None and oldest and cursor < oldest - 1:
            await websocket.send_json({"kind": "resync", "oldest": oldest})
        try:
            while True:
                batch = store.events_after(position, 1000)
                for item in batch:
                    if wanted is None or item["kind"] in wanted:
                        await websocket.send_json(item)
                if batch:
                    position = batch[-1]["id"]
                    continue
                await feed.wait(15.0)
        except (WebSocketDisconnect, RuntimeError):
            return

    # -- upstream-compatible paths (satoshiware master-api) ------------------------------------
    def record_out(e: dict[str, Any]) -> dict[str, Any]:
        level = e.get("level") or "INFO"
        target = e.get("target") or ""
        message = e.get("message") or e["kind"]
        ts = _iso(e["ts"]) or ""
        return {
            "ts": ts,
            "level": level,
            "target": target,
            "category": e["kind"],
            "message": message,
            "raw": f"{ts} {level:>5} {target}: {message}",
        }

    non_share = [
        "attribution_fix",
        "connect",
        "authorize",
        "disconnect",
        "channel_open",
        "difficulty",
        "vardiff",
        "upstream_connect",
        "upstream_disconnect",
        "upstream_reconnect",
        "block_found",
        "translator_start",
        "log_error",
        "reject",
    ]

    def status_payload() -> dict[str, Any]:
        exists = settings.log_file.exists()
        pos = store.read_position()
        state = (pos.parser_state if pos else None) or {}
        errors = store.recent_events(100, levels=["ERROR", "WARN"])
        cutoff = time.time() - 3600
        recent_errors = sum(1 for e in errors if e["ts"] >= cutoff)
        ok = exists and tailer.running
        return {
            "status": "ok" if ok else "degraded",
            "configured": True,
            "log_configured": True,
            "monitoring_configured": cross_check is not None,
            "log_status": "ok" if ok else "degraded",
            "monitoring_status": (
                "unconfigured" if cross_check is None else ("ok" if cross_check.up else "degraded")
            ),
            "last_event_ts": _iso(pos.last_line_ts if pos else None),
            "recent_error_count": recent_errors,
            "upstream_channels": len(state.get("channels", {})),
            "downstream_clients": len(state.get("downstreams", {})),
            "log_path": str(settings.log_file),
        }

    @app.get("/v1/translator/status", tags=["upstream-compatible"])
    async def translator_status(_: Principal = read) -> dict[str, Any]:
        return status_payload()

    @app.get("/v1/translator/summary", tags=["upstream-compatible"])
    async def translator_summary(
        lines: int = Query(default=500, ge=1, le=2000), _: Principal = read
    ) -> dict[str, Any]:
        records = await asyncio.to_thread(read_tail_records, settings.log_file, lines)
        by_level: dict[str, int] = {}
        by_cat: dict[str, int] = {}
        for r in records:
            by_level[r["level"]] = by_level.get(r["level"], 0) + 1
            by_cat[r["category"]] = by_cat.get(r["category"], 0) + 1
        st = status_payload()
        return {
            "status": st["status"],
            "configured": True,
            "log_path": str(settings.log_file),
            "exists": settings.log_file.exists(),
            "readable": os.access(settings.log_file, os.R_OK),
            "total_records_scanned": len(records),
            "counts_by_level": by_level,
            "counts_by_category": by_cat,
            "last_event_ts": st["last_event_ts"],
            "recent_error_count": st["recent_error_count"],
        }

    @app.get("/v1/translator/miner-work/snapshot", tags=["upstream-compatible"])
    async def miner_work(_: Principal = read) -> dict[str, Any]:
        pos = store.read_position()
        state = (pos.parser_state if pos else None) or {}
        downstreams = state.get("downstreams", {})
        wins = windows_by_worker()["24h"]
        items = []
        for cid, ch in sorted(state.get("channels", {}).items(), key=lambda kv: int(kv[0])):
            ds = downstreams.get(str(ch.get("ds")), {})
            worker_name = ch.get("worker")
            key = worker_name or f"channel:{ch.get('identity')}"
            work = wins.get(key, {}).get("diff_sum")
            items.append(
                {
                    "channel_id": int(cid),
                    "client_id": ch.get("ds"),
                    "worker_identity": worker_name,
                    "authorized_worker_name": worker_name,
                    "downstream_user_identity": worker_name,
                    "upstream_user_identity": ch.get("identity"),
                    "shares_acknowledged": ch.get("acked"),
                    "shares_submitted": None,
                    "shares_rejected": None,
                    "share_work_sum": None if work is None else repr(work),
                    "best_diff": None,
                    "blocks_found": None,
                    "hashrate": None,
                    "nominal_hashrate": None,
                    "downstream_target_hex": None,
                    "upstream_target_hex": None,
                    "extranonce1_hex": None,
                    "extranonce_prefix_hex": None,
                    "extranonce2_len": None,
                    "full_extranonce_size": None,
                    "rollable_extranonce_size": None,
                    "version_rolling": None,
                    "version_rolling_mask": None,
                    "version_rolling_min_bit": None,
                    "join_status": "joined" if worker_name and ds else "upstream_only",
                }
            )
        return {
            "status": "ok" if tailer.running else "degraded",
            "configured": True,
            "snapshot_time": int(time.time()),
            "source": "translator",
            "data": {"total": len(items), "items": items},
            "detail": None,
        }

    @app.get("/v1/translator/events/recent", tags=["upstream-compatible"])
    async def events_recent(
        limit: int = Query(default=100, ge=1, le=DB_INT_MAX),
        category: str | None = None,
        level: str | None = None,
        contains: str | None = None,
        _: Principal = read,
    ) -> list[dict[str, Any]]:
        kinds = [category] if category else non_share
        rows = [record_out(e) for e in store.recent_events(min(limit, 1000) * 4, kinds=kinds)]
        if level:
            rows = [r for r in rows if r["level"] == level.upper()]
        if contains:
            rows = [r for r in rows if contains in r["message"]]
        return rows[: min(limit, 1000)]

    @app.get("/v1/translator/errors/recent", tags=["upstream-compatible"])
    async def errors_recent(
        limit: int = Query(default=100, ge=1, le=DB_INT_MAX), _: Principal = read
    ) -> list[dict[str, Any]]:
        rows = store.recent_events(min(limit, 1000), levels=["ERROR", "WARN"])
        return [record_out(e) for e in rows]

    @app.get("/v1/translator/blocks-found", tags=["upstream-compatible"])
    async def blocks_found(
        limit: int = Query(default=100, ge=1, le=1000), _: Principal = read
    ) -> list[dict[str, Any]]:
        return [record_out(e) for e in store.recent_events(limit, kinds=["block_found"])]

    @app.get("/v1/translator/logs/tail", tags=["upstream-compatible"])
    async def logs_tail(
        lines: int = Query(default=200, ge=1, le=DB_INT_MAX),
        level: str | None = None,
        contains: str | None = None,
        _: Principal = read,
    ) -> list[dict[str, Any]]:
        records = await asyncio.to_thread(read_tail_records, settings.log_file, min(lines, 5000))
        records.reverse()
        if level:
            records = [r for r in records if r["level"] == level.upper()]
        if contains:
            records = [r for r in records if contains in r["message"]]
        return records

    def envelope(data: dict[str, Any], detail: Any = None, status: str = "ok") -> dict[str, Any]:
        return {"status": status, "data": data, "detail": detail}

    @app.get("/v1/miners", tags=["upstream-compatible"])
    async def miners(
        offset: int = Query(default=0, ge=0, le=DB_INT_MAX),
        limit: int = Query(default=50, ge=1, le=200),
        sort: Literal[
            "miner_id", "worker_name", "hashrate", "last_share_ts", "connected_since_ts"
        ] = "connected_since_ts",
        order: Literal["asc", "desc"] = "desc",
        status: Literal["connected", "disconnected", "all"] = "all",
        _: Principal = read,
    ) -> dict[str, Any]:
        now = time.time()
        rate_win = store.totals(now - WINDOWS["15m"])
        day = store.totals(now - WINDOWS["24h"])
        items = []
        for w in store.workers():
            name = w["worker"]
            items.append(
                {
                    "miner_id": name,
                    "worker_name": name,
                    "member": w["member"],
                    "user_identity": None,
                    "client_ip": None,
                    "channel_id": w["channel"],
                    "connected": w["connected"],
                    "hashrate": stats(rate_win.get(name), WINDOWS["15m"])["hashrate_hps"],
                    "difficulty": w["difficulty"],
                    "accepted_shares": int(day.get(name, {}).get("accepted", 0)),
                    "rejected_shares": int(day.get(name, {}).get("rejected", 0)),
                    "last_share_ts": _iso(w["last_share"]),
                    "connected_since_ts": _iso(w["first_seen"]),
                    "state": worker_state(w["last_share"], now),
                }
            )
        if status != "all":
            items = [i for i in items if i["connected"] is (status == "connected")]
        present = [i for i in items if i.get(sort) is not None]
        missing = [i for i in items if i.get(sort) is None]
        present.sort(key=lambda i: i[sort], reverse=order == "desc")
        items = present + missing
        data = {
            "items": items[offset : offset + limit],
            "total": len(items),
            "offset": offset,
            "limit": limit,
            "sort": sort,
            "order": order,
            "status_filter": status,
            "last_updated_ts": _iso(now),
        }
        return envelope(data)

    def compat_series(
        window: str, bucket: str, miner_id: str | None
    ) -> list[tuple[str, dict[str, Any]]]:
        window_s, bucket_s = COMPAT_WINDOWS[window], COMPAT_BUCKETS[bucket]
        return [(b["start"], b) for b in histogram(window_s, bucket_s, miner_id, None)]

    @app.get("/v1/metrics/hashrate", tags=["upstream-compatible"])
    async def metrics_hashrate(
        window: Literal["15m", "1h", "6h", "24h", "7d"] = Query(...),
        bucket: Literal["1m", "5m", "15m", "1h"] = Query(...),
        miner_id: str | None = None,
        _: Principal = read,
    ) -> dict[str, Any]:
        series = [
            {"ts": ts, "hashrate": b["hashrate_hps"]}
            for ts, b in compat_series(window, bucket, miner_id)
        ]
        data = {
            "series": series,
            "window": window,
            "bucket": bucket,
            "miner_id": miner_id,
            "unit": "hps",
            "last_updated_ts": _iso(time.time()),
        }
        return envelope(data)

    @app.get("/v1/metrics/shares", tags=["upstream-compatible"])
    async def metrics_shares(
        window: Literal["15m", "1h", "6h", "24h", "7d"] = Query(...),
        bucket: Literal["1m", "5m", "15m", "1h"] = Query(...),
        miner_id: str | None = None,
        _: Principal = read,
    ) -> dict[str, Any]:
        points = compat_series(window, bucket, miner_id)
        data = {
            "series": {
                key: [{"ts": ts, "value": b[f"shares_{key}"]} for ts, b in points]
                for key in ("submitted", "accepted", "rejected")
            },
            "window": window,
            "bucket": bucket,
            "miner_id": miner_id,
            "last_updated_ts": _iso(time.time()),
        }
        return envelope(data)

    return app
