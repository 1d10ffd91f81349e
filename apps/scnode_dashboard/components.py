"""The owner's view of every component: each daemon's API asked now, disk usage, the newest
backup and the age of the API keys, with warnings.

What to ask comes from the components file the roles write (``components_file``, a JSON list
of ``{"name", "kind", "url", "key_file" | "key", "path"}``; kinds ``chain_api``,
``lightning_api``, ``stratum``, ``disk``) plus the exchange (``exchange_url``). A component
whose entry has no URL (or a standard kind missing from the file) is **not configured**; one
that does not answer, or answers an error, is **down**. A probe never raises: the page always
renders.
"""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from scnode_core.apikeys import ApiKeyError, ApiKeyStore

UP, DOWN, NOT_CONFIGURED = "up", "down", "not configured"
STANDARD = {
    "chain_api": "Chain API",
    "lightning_api": "Lightning API",
    "stratum": "Stratum translator stats",
}
PROBE_TIMEOUT = 3.0
DISK_WARN_PERCENT = 90.0
CHANNEL_LOW_PERCENT = 10.0


@dataclass
class Component:
    name: str
    kind: str
    state: str = NOT_CONFIGURED
    version: str = ""
    facts: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def css(self) -> str:
        if self.state == DOWN:
            return "bad"
        return "warn" if self.warnings else ("ok" if self.state == UP else "off")


class ProbeError(Exception):
    """The component did not answer as expected (the message says how)."""


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every client of the owner pages: httpx builds a new one
    (loading the CA bundle, ~0.3 s on a loaded node) for each client otherwise."""
    return ssl.create_default_context()


def _key(entry: dict[str, Any]) -> str:
    if entry.get("key_file"):
        return Path(str(entry["key_file"])).read_text().strip()
    return str(entry.get("key") or "")


async def _get(
    http: httpx.AsyncClient, url: str, key: str = "", ok: tuple[int, ...] = (200,)
) -> Any:
    headers = {"X-API-Key": key} if key else {}
    try:
        reply = await http.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise ProbeError(f"no answer ({type(exc).__name__})") from exc
    if reply.status_code not in ok:
        raise ProbeError(f"HTTP {reply.status_code}")
    try:
        return reply.json()
    except ValueError as exc:
        raise ProbeError("not JSON") from exc


def _pct(value: float) -> str:
    return f"{value:.2f} %"


async def _chain_api(http: httpx.AsyncClient, c: Component, url: str, key: str) -> None:
    version = await _get(http, f"{url}/version")
    status = await _get(http, f"{url}/v1/status", key)
    c.version = f"API {version.get('version', '?')}; daemon {status.get('daemon_version', '?')}"
    blocks, headers = int(status.get("blocks") or 0), int(status.get("headers") or 0)
    progress = float(status.get("verification_progress") or 0.0) * 100
    peers = int(status.get("peers") or 0)
    c.facts += [
        ("network", str(status.get("network"))),
        ("blocks / headers", f"{blocks:,} / {headers:,}"),
        ("sync progress", _pct(progress)),
        ("peers", str(peers)),
        ("pruned", "yes" if status.get("pruned") else "no"),
    ]
    if status.get("initial_block_download") or headers - blocks > 2:
        c.warnings.append(f"still syncing: {headers - blocks:,} blocks behind")
    if peers == 0 and status.get("network") != "regtest":
        c.warnings.append("no peers")
    if status.get("watcher_error"):
        c.warnings.append(f"watcher: {status['watcher_error']}")


async def _lightning_api(http: httpx.AsyncClient, c: Component, url: str, key: str) -> None:
    status = await _get(http, f"{url}/v1/status", key)
    node = await _get(http, f"{url}/v1/node", key)
    c.version = f"Core Lightning {node.get('version', '?')}"
    c.facts += [
        ("network", str(status.get("network"))),
        ("block height", f"{status.get('blockheight')} (behind: {status.get('blocks_behind')})"),
        ("peers", str(node.get("num_peers"))),
        ("active channels", str(node.get("num_active_channels"))),
    ]
    if not status.get("synced"):
        c.warnings.append("not synced with bitcoind")
    channel = status.get("channel")
    if not channel:
        c.warnings.append("no channel to the SC Cluster")
        return
    total, local = int(channel.get("total_msat", 0)), int(channel.get("local_msat", 0))
    c.facts += [
        ("channel", f"{channel.get('short_channel_id')} {channel.get('state')}"),
        ("ours / theirs", f"{local // 1000:,} / {(total - local) // 1000:,} sats"),
    ]
    if channel.get("state") != "CHANNELD_NORMAL" or not channel.get("peer_connected"):
        c.warnings.append("channel not usable (state or peer disconnected)")
    elif total and local * 100 / total < CHANNEL_LOW_PERCENT:
        c.warnings.append(f"our side of the channel is below {CHANNEL_LOW_PERCENT:.0f} %")


async def _stratum(http: httpx.AsyncClient, c: Component, url: str, key: str) -> None:
    health = await _get(http, f"{url}/healthz", ok=(200, 503))
    version = await _get(http, f"{url}/version")
    pool = await _get(http, f"{url}/v1/stratum/pool", key)
    c.version = f"stats API {version.get('version', '?')}"
    windows = pool.get("windows") or {}
    first = next(iter(windows.items()), None)
    rate = (
        f"{float(first[1].get('hashrate_hps', 0)) / 1e12:,.3f} TH/s ({first[0]})" if first else "?"
    )
    c.facts += [
        ("hashrate", rate),
        ("workers connected", f"{pool.get('workers_connected')} of {pool.get('workers')}"),
        ("last share log line", str(health.get("last_line_ts"))),
    ]
    if health.get("status") != "ok":
        c.warnings.append("translator log not followed (degraded)")
    if not pool.get("workers_connected"):
        c.warnings.append("no worker connected")


async def _exchange(http: httpx.AsyncClient, c: Component, url: str, _: str) -> None:
    health = await _get(http, f"{url}/healthz")
    c.version = str(health.get("version", "?"))
    for name, value in health.items():
        if name not in ("version",) and isinstance(value, str | int | float | bool):
            c.facts.append((name, str(value)))
    if health.get("status") not in (None, "ok"):
        c.warnings.append(f"status {health.get('status')}")


PROBES = {
    "chain_api": _chain_api,
    "lightning_api": _lightning_api,
    "stratum": _stratum,
    "exchange": _exchange,
}


async def _probe(http: httpx.AsyncClient, entry: dict[str, Any]) -> Component:
    kind = str(entry.get("kind", ""))
    c = Component(str(entry.get("name") or STANDARD.get(kind, kind)), kind)
    if kind == "disk":
        return _disk(c, entry.get("path"))
    url = str(entry.get("url") or "").rstrip("/")
    if kind not in PROBES:
        c.warnings.append(f"unknown kind {kind!r} in the components file")
        return c
    if not url:
        return c
    try:
        await PROBES[kind](http, c, url, _key(entry))
    except (ProbeError, OSError, ValueError, TypeError, AttributeError) as exc:
        c.state, c.facts = DOWN, []
        c.warnings = [f"down: {exc}"]
        return c
    c.state = UP
    return c


def _disk(c: Component, path: Any) -> Component:
    if not path:
        return c
    try:
        usage = shutil.disk_usage(str(path))
    except OSError as exc:
        c.state, c.warnings = DOWN, [f"cannot read {path}: {exc.strerror}"]
        return c
    used = usage.used * 100 / usage.total if usage.total else 0.0
    c.state = UP
    c.facts = [
        ("path", str(path)),
        ("used", f"{_pct(used)} of {usage.total / 1e9:,.1f} GB"),
        ("free", f"{usage.free / 1e9:,.1f} GB"),
    ]
    if used >= DISK_WARN_PERCENT:
        c.warnings.append(f"disk {used:.0f} % full")
    return c


def backup(directory: Path | None, max_age_hours: float, now: float) -> Component:
    """The newest file in the backup directory (archives and manifests) and its age."""
    c = Component("Backups", "backup")
    if directory is None:
        return c
    try:
        newest = max((p.stat().st_mtime for p in directory.iterdir() if p.is_file()), default=None)
    except OSError as exc:
        c.state, c.warnings = DOWN, [f"cannot read {directory}: {exc.strerror}"]
        return c
    c.state = UP
    if newest is None:
        c.warnings.append("no backup yet")
        return c
    hours = (now - newest) / 3600
    c.facts = [("directory", str(directory)), ("last backup", f"{hours:,.1f} h ago")]
    if hours > max_age_hours:
        c.warnings.append(f"last backup older than {max_age_hours:g} h")
    return c


def api_keys(files: list[Path], max_age_days: float, now: float) -> Component:
    """Every key in the API key files: its age and expiry (the secrets are never read)."""
    c = Component("API keys", "api_keys")
    if not files:
        return c
    c.state = UP
    when = datetime.fromtimestamp(now, UTC)
    for path in files:
        try:
            records = ApiKeyStore.load(path).records
        except (OSError, ApiKeyError, json.JSONDecodeError) as exc:
            c.warnings.append(f"{path}: unreadable ({exc})")
            continue
        for r in records:
            days = (when - r.created).total_seconds() / 86400
            label = f"{path.parent.name}/{r.name or r.key_id}"
            expiry = f", expires {r.not_after:%Y-%m-%d}" if r.not_after else ""
            c.facts.append((label, f"{days:,.0f} days old ({', '.join(sorted(r.scopes))}){expiry}"))
            if r.not_after is None and days > max_age_days:
                c.warnings.append(f"{label}: older than {max_age_days:g} days, rotate it")
            if r.not_after is not None and (r.not_after - when).total_seconds() < 14 * 86400:
                c.warnings.append(f"{label}: expires within 14 days")
    return c


def load_entries(path: Path | None) -> tuple[list[dict[str, Any]], str]:
    """The components file's entries, and an error to show when it cannot be read."""
    if path is None:
        return [], ""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return [], f"components file {path}: {exc}"
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        return [], f"components file {path}: not a JSON list of objects"
    return data, ""


async def survey(
    exchange_url: str,
    components_file: Path | None,
    backup_dir: Path | None,
    backup_max_age_hours: float,
    key_files: list[Path],
    key_max_age_days: float,
) -> tuple[list[Component], str]:
    """Every component, asked concurrently (each within ``PROBE_TIMEOUT``)."""
    entries, error = load_entries(components_file)
    entries = [{"name": "Exchange", "kind": "exchange", "url": exchange_url}, *entries]
    kinds = {str(e.get("kind")) for e in entries}
    entries += [{"kind": k, "name": n} for k, n in STANDARD.items() if k not in kinds]
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT, verify=tls_context()) as http:
        found = list(await asyncio.gather(*(_probe(http, e) for e in entries)))
    now = time.time()
    found.append(backup(backup_dir, backup_max_age_hours, now))
    found.append(api_keys(key_files, key_max_age_days, now))
    return found, error
