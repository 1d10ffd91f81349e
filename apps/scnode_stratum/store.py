"""SQLite store of the stratum stats API (WAL; one writer: the tailer).

Schema versioning: ``CREATE TABLE IF NOT EXISTS`` plus ``PRAGMA user_version`` (now 1); a
future change adds an ``if version < 2`` step in ``_migrate``. The file is this instance's own
cache of the translator log: deleting it re-reads the current log file from the start.

Tables:

- ``tail``: one row — the inode and byte offset of the log file read so far, the last bytes
  before the offset (to find the same spot in a copy made by ``copytruncate``) and the parser's
  attribution state. Written **in the same transaction** as the rows parsed from those bytes,
  so a crash at any moment neither loses nor repeats a line.
- ``events``: one row per parsed fact (share submitted/acknowledged/rejected, connects,
  authorizations, difficulty, upstream events). Share rows older than ``raw_retention``
  are compacted into ``minute_buckets`` (per minute and worker: submitted, accepted, rejected,
  accepted difficulty sum) and deleted; other events are kept for ``event_retention``.
- ``workers``: last known facts per worker name (member, connected, channel, difficulty,
  first/last seen, last share).

Windows (1 min / 15 min / 1 h / 24 h) sum raw rows with ``ts >= now - window`` plus the
buckets of minutes at or after the window start (only compacted minutes are in buckets, so
nothing is counted twice). Estimated hashrate = accepted difficulty * 2**32 / window seconds.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scnode_stratum.parser import Event, WorkerUpdate, member_of

SCHEMA_VERSION = 1
WINDOWS: dict[str, int] = {"1m": 60, "15m": 900, "1h": 3600, "24h": 86400}
HASHES_PER_DIFF1 = 2**32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tail (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    inode INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    tail_bytes BLOB NOT NULL,
    parser_state TEXT NOT NULL,
    lines INTEGER NOT NULL DEFAULT 0,
    last_line_ts REAL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    worker TEXT,
    channel INTEGER,
    submitted INTEGER NOT NULL DEFAULT 0,
    accepted INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    diff_sum REAL NOT NULL DEFAULT 0,
    level TEXT,
    target TEXT,
    message TEXT,
    data TEXT
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE TABLE IF NOT EXISTS minute_buckets (
    minute INTEGER NOT NULL,
    worker TEXT NOT NULL,
    submitted INTEGER NOT NULL,
    accepted INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    diff_sum REAL NOT NULL,
    PRIMARY KEY (minute, worker)
);
CREATE TABLE IF NOT EXISTS workers (
    worker TEXT PRIMARY KEY,
    member TEXT,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    last_share REAL,
    connected INTEGER NOT NULL DEFAULT 0,
    channel INTEGER,
    difficulty REAL,
    peer TEXT
);
"""

SHARE_KINDS = ("submit", "accept", "reject")


@dataclass(frozen=True)
class TailPosition:
    inode: int
    offset: int
    tail_bytes: bytes
    parser_state: dict[str, Any] | None
    lines: int
    last_line_ts: float | None


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class StratumStore:
    """Writer methods are called by the tailer (one thread at a time); readers use their own
    connection, so API reads never wait for a write transaction (WAL)."""

    def __init__(self, path: Path, member_separator: str = ".") -> None:
        self.path = path
        self.separator = member_separator
        path.parent.mkdir(parents=True, exist_ok=True)
        self._w = _connect(path)
        self._migrate()
        self._r = _connect(path)
        self._rlock = threading.Lock()

    def _migrate(self) -> None:
        version = self._w.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: schema {version} is newer than this program's")
        self._w.executescript(_SCHEMA)
        self._w.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._w.close()
        self._r.close()

    # -- the tailer's side ----------------------------------------------------------------------
    def position(self) -> TailPosition | None:
        row = self._w.execute(
            "SELECT inode, offset, tail_bytes, parser_state, lines, last_line_ts FROM tail"
        ).fetchone()
        if row is None:
            return None
        return TailPosition(row[0], row[1], bytes(row[2]), json.loads(row[3]), row[4], row[5])

    def commit(
        self,
        events: list[Event],
        workers: dict[str, WorkerUpdate],
        inode: int,
        offset: int,
        tail_bytes: bytes,
        parser_state: dict[str, Any],
        lines: int,
    ) -> int:
        """Store parsed rows and the new position atomically; returns the last event id."""
        conn = self._w
        last_ts = events[-1].ts if events else None
        conn.execute("BEGIN IMMEDIATE")
        try:
            if events:
                conn.executemany(
                    "INSERT INTO events (ts, kind, worker, channel, submitted, accepted, rejected,"
                    " diff_sum, level, target, message, data) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (
                            e.ts,
                            e.kind,
                            e.worker,
                            e.channel,
                            e.submitted,
                            e.accepted,
                            e.rejected,
                            e.diff_sum,
                            None if e.kind in ("submit", "accept") else e.level,
                            e.target or None,
                            e.message or None,
                            json.dumps(e.data) if e.data is not None else None,
                        )
                        for e in events
                    ],
                )
            for name, u in workers.items():
                conn.execute(
                    "INSERT INTO workers (worker, member, first_seen, last_seen, last_share,"
                    " connected, channel, difficulty, peer) VALUES (?,?,?,?,?,?,?,?,?)"
                    " ON CONFLICT (worker) DO UPDATE SET last_seen = excluded.last_seen,"
                    " last_share = COALESCE(excluded.last_share, last_share),"
                    " connected = CASE WHEN ? IS NULL THEN connected ELSE excluded.connected END,"
                    " channel = COALESCE(excluded.channel, channel),"
                    " difficulty = COALESCE(excluded.difficulty, difficulty),"
                    " peer = COALESCE(excluded.peer, peer)",
                    (
                        name,
                        member_of(name, self.separator),
                        u.last_seen,
                        u.last_seen,
                        u.last_share,
                        1 if u.connected or (u.connected is None and u.last_share) else 0,
                        u.channel,
                        u.difficulty,
                        u.peer,
                        u.connected,
                    ),
                )
            conn.execute(
                "INSERT INTO tail (id, inode, offset, tail_bytes, parser_state, lines,"
                " last_line_ts) VALUES (1,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET"
                " inode = excluded.inode, offset = excluded.offset,"
                " tail_bytes = excluded.tail_bytes, parser_state = excluded.parser_state,"
                " lines = tail.lines + ?,"
                " last_line_ts = COALESCE(excluded.last_line_ts, tail.last_line_ts)",
                (inode, offset, tail_bytes, json.dumps(parser_state), lines, last_ts, lines),
            )
            last_id = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return int(last_id)

    def compact(
        self,
        now: float | None = None,
        raw_retention: float = 7200,
        event_retention: float = 7 * 86400,
        bucket_retention: float = 30 * 86400,
    ) -> int:
        """Fold share rows older than ``raw_retention`` into minute buckets; prune old rows."""
        now = time.time() if now is None else now
        cutoff = now - raw_retention
        conn = self._w
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO minute_buckets (minute, worker, submitted, accepted, rejected,"
                " diff_sum) SELECT CAST(ts / 60 AS INTEGER), COALESCE(worker, ''),"
                " SUM(submitted), SUM(accepted), SUM(rejected), SUM(diff_sum) FROM events"
                " WHERE ts < ? AND (submitted + accepted + rejected) > 0"
                " GROUP BY CAST(ts / 60 AS INTEGER), COALESCE(worker, '')"
                " ON CONFLICT (minute, worker) DO UPDATE SET"
                " submitted = submitted + excluded.submitted,"
                " accepted = accepted + excluded.accepted,"
                " rejected = rejected + excluded.rejected,"
                " diff_sum = diff_sum + excluded.diff_sum",
                (cutoff,),
            )
            moved = conn.execute(
                "DELETE FROM events WHERE ts < ? AND (submitted + accepted + rejected) > 0",
                (cutoff,),
            ).rowcount
            conn.execute(
                "DELETE FROM events WHERE ts < ? AND kind IN ('job', 'prevhash')", (cutoff,)
            )
            conn.execute("DELETE FROM events WHERE ts < ?", (now - event_retention,))
            conn.execute(
                "DELETE FROM minute_buckets WHERE minute < ?", (int((now - bucket_retention) / 60),)
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return int(moved)

    # -- readers --------------------------------------------------------------------------------
    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        # Queries here are built from constant fragments, "?" placeholders and integers only.
        with self._rlock:
            return self._r.execute(sql, tuple(params)).fetchall()

    def read_position(self) -> TailPosition | None:
        rows = self._read(
            "SELECT inode, offset, tail_bytes, parser_state, lines, last_line_ts FROM tail"
        )
        if not rows:
            return None
        r = rows[0]
        return TailPosition(r[0], r[1], bytes(r[2]), json.loads(r[3]), r[4], r[5])

    def _filter(self, worker: str | None, member: str | None) -> tuple[str, list[Any]]:
        if worker is not None:
            return " AND worker = ?", [worker]
        if member is not None:
            return (
                " AND worker IN (SELECT worker FROM workers WHERE member = ?)",
                [member],
            )
        return "", []

    def totals(
        self,
        start: float,
        worker: str | None = None,
        member: str | None = None,
        end: float = float("inf"),
    ) -> dict[str, dict[str, float]]:
        """Per worker: submitted, accepted, rejected, diff_sum in ``[start, end)`` (compacted
        rows count by their minute: a bucket is in when its minute starts in the range)."""
        cond, params = self._filter(worker, member)
        out: dict[str, dict[str, float]] = {}
        end_minute = int(-(-end // 60)) if end != float("inf") else 2**62
        raw = self._read(
            "SELECT COALESCE(worker, ''), SUM(submitted), SUM(accepted), SUM(rejected),"  # noqa: S608
            f" SUM(diff_sum) FROM events WHERE ts >= ? AND ts < ?{cond}"
            " GROUP BY COALESCE(worker, '')",
            [start, end, *params],
        )
        buckets = self._read(
            "SELECT worker, SUM(submitted), SUM(accepted), SUM(rejected), SUM(diff_sum)"  # noqa: S608
            f" FROM minute_buckets WHERE minute >= ? AND minute < ?{cond} GROUP BY worker",
            [int(-(-start // 60)), end_minute, *params],
        )
        for name, sub, acc, rej, diff in raw + buckets:
            entry = out.setdefault(
                name, {"submitted": 0, "accepted": 0, "rejected": 0, "diff_sum": 0.0}
            )
            entry["submitted"] += sub or 0
            entry["accepted"] += acc or 0
            entry["rejected"] += rej or 0
            entry["diff_sum"] += diff or 0.0
        return {k: v for k, v in out.items() if any(v.values())}

    def series(
        self,
        start: float,
        bucket_seconds: int,
        worker: str | None = None,
        member: str | None = None,
    ) -> dict[int, dict[str, float]]:
        """Sums per bucket (key = bucket start, Unix seconds) since ``start``."""
        cond, params = self._filter(worker, member)
        out: dict[int, dict[str, float]] = {}
        raw = self._read(
            f"SELECT CAST(ts / {bucket_seconds} AS INTEGER) * {bucket_seconds}, SUM(submitted),"  # noqa: S608
            " SUM(accepted), SUM(rejected), SUM(diff_sum) FROM events"
            f" WHERE ts >= ? AND (submitted + accepted + rejected) > 0{cond} GROUP BY 1",
            [start, *params],
        )
        buckets = self._read(
            f"SELECT CAST(minute * 60 / {bucket_seconds} AS INTEGER) * {bucket_seconds},"  # noqa: S608
            " SUM(submitted), SUM(accepted), SUM(rejected), SUM(diff_sum) FROM minute_buckets"
            f" WHERE minute >= ?{cond} GROUP BY 1",
            [int(start // 60), *params],
        )
        for key, sub, acc, rej, diff in raw + buckets:
            entry = out.setdefault(
                int(key), {"submitted": 0, "accepted": 0, "rejected": 0, "diff_sum": 0.0}
            )
            entry["submitted"] += sub or 0
            entry["accepted"] += acc or 0
            entry["rejected"] += rej or 0
            entry["diff_sum"] += diff or 0.0
        return out

    def workers(self, member: str | None = None) -> list[dict[str, Any]]:
        cond = " WHERE member = ?" if member is not None else ""
        rows = self._read(
            "SELECT worker, member, first_seen, last_seen, last_share, connected, channel,"  # noqa: S608
            f" difficulty, peer FROM workers{cond} ORDER BY worker",
            [member] if member is not None else [],
        )
        keys = (
            "worker",
            "member",
            "first_seen",
            "last_seen",
            "last_share",
            "connected",
            "channel",
            "difficulty",
            "peer",
        )
        result = [dict(zip(keys, row, strict=True)) for row in rows]
        for item in result:
            item["connected"] = bool(item["connected"])
        return result

    def events_after(
        self, cursor: int, limit: int = 500, kinds: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        kinds = list(kinds) if kinds is not None else None
        cond = f" AND kind IN ({','.join('?' * len(kinds))})" if kinds else ""
        rows = self._read(
            "SELECT id, ts, kind, worker, channel, submitted, accepted, rejected, diff_sum,"  # noqa: S608
            f" level, target, message, data FROM events WHERE id > ?{cond} ORDER BY id LIMIT ?",
            [cursor, *(kinds or []), limit],
        )
        return [_event_json(r) for r in rows]

    def recent_events(
        self, limit: int, kinds: Iterable[str] | None = None, levels: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        conds: list[str] = []
        params: list[Any] = []
        if kinds is not None:
            k = list(kinds)
            conds.append(f"kind IN ({','.join('?' * len(k))})")
            params += k
        if levels is not None:
            lv = list(levels)
            conds.append(f"level IN ({','.join('?' * len(lv))})")
            params += lv
        where = (" WHERE " + " AND ".join(conds)) if conds else ""
        rows = self._read(
            "SELECT id, ts, kind, worker, channel, submitted, accepted, rejected, diff_sum,"  # noqa: S608
            f" level, target, message, data FROM events{where} ORDER BY id DESC LIMIT ?",
            [*params, limit],
        )
        return [_event_json(r) for r in rows]

    def last_event_id(self) -> int:
        return int(self._read("SELECT COALESCE(MAX(id), 0) FROM events")[0][0])

    def oldest_event_id(self) -> int:
        return int(self._read("SELECT COALESCE(MIN(id), 0) FROM events")[0][0])


def _event_json(row: tuple[Any, ...]) -> dict[str, Any]:
    (eid, ts, kind, worker, channel, sub, acc, rej, diff, level, target, message, data) = row
    out: dict[str, Any] = {"id": eid, "ts": ts, "kind": kind, "worker": worker, "channel": channel}
    if kind in SHARE_KINDS:
        out.update(submitted=sub, accepted=acc, rejected=rej, difficulty_sum=diff)
    if level:
        out["level"] = level
    if target:
        out["target"] = target
    if message:
        out["message"] = message
    if data:
        out["data"] = json.loads(data)
    return out
