"""The chain API's own small state: the event journal, send idempotency keys, tracked wallet
outputs and the last block it processed. SQLite in WAL mode, one connection on the event loop
(every statement is short), so a restart resumes where it stopped.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sends (
    idempotency_key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    txid TEXT,
    error_code INTEGER,
    error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS wallet_outputs (
    txid TEXT NOT NULL,
    vout INTEGER NOT NULL,
    address TEXT NOT NULL,
    label TEXT NOT NULL,
    category TEXT NOT NULL,
    amount_sats INTEGER NOT NULL,
    confirmations INTEGER NOT NULL,
    blockhash TEXT,
    final INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (txid, vout)
);
CREATE INDEX IF NOT EXISTS wallet_outputs_open ON wallet_outputs (final);
CREATE TABLE IF NOT EXISTS chain_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Event:
    id: int
    created: float
    kind: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.created, "kind": self.kind, "data": self.data}


@dataclass(frozen=True)
class SendRecord:
    idempotency_key: str
    request_hash: str
    state: str
    txid: str | None
    error_code: int | None
    error: str | None


@dataclass(frozen=True)
class WalletOutput:
    txid: str
    vout: int
    address: str
    label: str
    category: str
    amount_sats: int
    confirmations: int
    blockhash: str | None
    final: bool


class ChainApiStore:
    """All reads and writes of the chain API's SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- events ----------------------------------------------------------------------------
    def append_event(self, kind: str, data: dict[str, Any]) -> Event:
        created = time.time()
        cursor = self._db.execute(
            "INSERT INTO events (created, kind, data) VALUES (?, ?, ?)",
            (created, kind, json.dumps(data, separators=(",", ":"))),
        )
        assert cursor.lastrowid is not None
        return Event(cursor.lastrowid, created, kind, data)

    def events_after(self, cursor: int, limit: int = 1000) -> list[Event]:
        rows = self._db.execute(
            "SELECT id, created, kind, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (cursor, limit),
        ).fetchall()
        return [Event(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def recent_events(self, limit: int) -> list[Event]:
        rows = self._db.execute(
            "SELECT id, created, kind, data FROM events ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [Event(r[0], r[1], r[2], json.loads(r[3])) for r in reversed(rows)]

    def oldest_event_id(self) -> int:
        row = self._db.execute("SELECT MIN(id) FROM events").fetchone()
        return int(row[0] or 0)

    def prune_events(self, keep: int) -> None:
        self._db.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (keep,))

    # -- sends -----------------------------------------------------------------------------
    def get_send(self, key: str) -> SendRecord | None:
        row = self._db.execute(
            "SELECT idempotency_key, request_hash, state, txid, error_code, error "
            "FROM sends WHERE idempotency_key = ?",
            (key,),
        ).fetchone()
        return SendRecord(*row) if row else None

    def begin_send(self, key: str, request_hash: str) -> None:
        now = time.time()
        self._db.execute(
            "INSERT INTO sends (idempotency_key, request_hash, state, created, updated) "
            "VALUES (?, ?, 'pending', ?, ?)",
            (key, request_hash, now, now),
        )

    def finish_send(
        self,
        key: str,
        *,
        txid: str | None = None,
        error_code: int | None = None,
        error: str | None = None,
    ) -> None:
        state = "sent" if txid else "failed"
        self._db.execute(
            "UPDATE sends SET state = ?, txid = ?, error_code = ?, error = ?, updated = ? "
            "WHERE idempotency_key = ?",
            (state, txid, error_code, error, time.time(), key),
        )

    def pending_sends(self) -> list[SendRecord]:
        rows = self._db.execute(
            "SELECT idempotency_key, request_hash, state, txid, error_code, error "
            "FROM sends WHERE state = 'pending'"
        ).fetchall()
        return [SendRecord(*r) for r in rows]

    # -- wallet outputs --------------------------------------------------------------------
    def get_output(self, txid: str, vout: int) -> WalletOutput | None:
        row = self._db.execute(
            "SELECT txid, vout, address, label, category, amount_sats, confirmations, "
            "blockhash, final FROM wallet_outputs WHERE txid = ? AND vout = ?",
            (txid, vout),
        ).fetchone()
        return _output(row) if row else None

    def upsert_output(self, out: WalletOutput) -> None:
        self._db.execute(
            "INSERT INTO wallet_outputs (txid, vout, address, label, category, amount_sats, "
            "confirmations, blockhash, final) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (txid, vout) DO UPDATE SET category = excluded.category, "
            "confirmations = excluded.confirmations, blockhash = excluded.blockhash, "
            "final = excluded.final",
            (
                out.txid,
                out.vout,
                out.address,
                out.label,
                out.category,
                out.amount_sats,
                out.confirmations,
                out.blockhash,
                int(out.final),
            ),
        )

    def open_outputs(self) -> list[WalletOutput]:
        rows = self._db.execute(
            "SELECT txid, vout, address, label, category, amount_sats, confirmations, "
            "blockhash, final FROM wallet_outputs WHERE final = 0"
        ).fetchall()
        return [_output(r) for r in rows]

    # -- chain state -----------------------------------------------------------------------
    def get_state(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM chain_state WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_state(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO chain_state (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def _output(row: tuple[Any, ...]) -> WalletOutput:
    return WalletOutput(
        txid=row[0],
        vout=row[1],
        address=row[2],
        label=row[3],
        category=row[4],
        amount_sats=row[5],
        confirmations=row[6],
        blockhash=row[7],
        final=bool(row[8]),
    )
