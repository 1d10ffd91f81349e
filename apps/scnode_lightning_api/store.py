"""The Lightning API's own state: the event journal, payments by idempotency key, the
reconciler's cursors into lightningd's lists and the last channel states seen. SQLite in WAL
mode, one connection on the event loop (every statement is short), so a restart resumes where
it stopped — and a payment is recorded *before* lightningd is asked to make it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scnode_core.eventjournal import EventJournal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    member TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    bolt11 TEXT NOT NULL,
    payment_hash TEXT NOT NULL,
    destination TEXT,
    amount_msat INTEGER NOT NULL,
    max_fee_msat INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'complete', 'failed')),
    amount_sent_msat INTEGER,
    preimage TEXT,
    error_code INTEGER,
    error TEXT,
    failed_seen REAL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
-- One live payment per invoice: a failed one may be retried under a new key.
CREATE UNIQUE INDEX IF NOT EXISTS payments_live_hash
    ON payments (payment_hash) WHERE state != 'failed';
CREATE INDEX IF NOT EXISTS payments_pending ON payments (state) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS payments_member ON payments (member, id);
CREATE TABLE IF NOT EXISTS api_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS channels (
    channel_id TEXT PRIMARY KEY,
    peer_id TEXT NOT NULL,
    state TEXT NOT NULL,
    peer_connected INTEGER NOT NULL
);
"""

_SELECT = (
    "SELECT id, idempotency_key, member, request_hash, bolt11, payment_hash, destination, "
    "amount_msat, max_fee_msat, state, amount_sent_msat, preimage, error_code, error, "
    "failed_seen, created, updated FROM payments "
)


@dataclass(frozen=True)
class Payment:
    id: int
    idempotency_key: str
    member: str
    request_hash: str
    bolt11: str
    payment_hash: str
    destination: str | None
    amount_msat: int
    max_fee_msat: int
    state: str
    amount_sent_msat: int | None
    preimage: str | None
    error_code: int | None
    error: str | None
    failed_seen: float | None
    created: float
    updated: float

    def to_json(self) -> dict[str, Any]:
        """What clients see (no request hash)."""
        return {
            "idempotency_key": self.idempotency_key,
            "member": self.member,
            "bolt11": self.bolt11,
            "payment_hash": self.payment_hash,
            "destination": self.destination,
            "amount_msat": self.amount_msat,
            "max_fee_msat": self.max_fee_msat,
            "state": self.state,
            "amount_sent_msat": self.amount_sent_msat,
            "fee_msat": (
                self.amount_sent_msat - self.amount_msat
                if self.state == "complete" and self.amount_sent_msat is not None
                else None
            ),
            "preimage": self.preimage,
            "error": (
                {"code": self.error_code, "message": self.error} if self.state == "failed" else None
            ),
            "created_at": self.created,
            "updated_at": self.updated,
        }


class LightningApiStore:
    """All reads and writes of the Lightning API's SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: a payment record must be on disk before lightningd is asked to pay
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        self.events = EventJournal(self.db)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Statements that must land together (an event and the cursor that produced it)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- payments --------------------------------------------------------------------------
    def payment(self, key: str) -> Payment | None:
        found = self.db.execute(_SELECT + "WHERE idempotency_key = ?", (key,)).fetchone()
        return Payment(*found) if found else None

    def live_payment_for(self, payment_hash: str) -> Payment | None:
        """The pending or complete payment of an invoice, if any."""
        found = self.db.execute(
            _SELECT + "WHERE payment_hash = ? AND state != 'failed'", (payment_hash,)
        ).fetchone()
        return Payment(*found) if found else None

    def begin_payment(
        self,
        *,
        key: str,
        member: str,
        request_hash: str,
        bolt11: str,
        payment_hash: str,
        destination: str | None,
        amount_msat: int,
        max_fee_msat: int,
    ) -> Payment:
        now = time.time()
        self.db.execute(
            "INSERT INTO payments (idempotency_key, member, request_hash, bolt11, payment_hash, "
            "destination, amount_msat, max_fee_msat, state, created, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            (
                key,
                member,
                request_hash,
                bolt11,
                payment_hash,
                destination,
                amount_msat,
                max_fee_msat,
                now,
                now,
            ),
        )
        found = self.payment(key)
        assert found is not None
        return found

    def complete_payment(self, key: str, *, preimage: str, amount_sent_msat: int) -> Payment:
        self.db.execute(
            "UPDATE payments SET state = 'complete', preimage = ?, amount_sent_msat = ?, "
            "error_code = NULL, error = NULL, updated = ? WHERE idempotency_key = ?",
            (preimage, amount_sent_msat, time.time(), key),
        )
        found = self.payment(key)
        assert found is not None
        return found

    def fail_payment(self, key: str, *, code: int | None, error: str) -> Payment:
        self.db.execute(
            "UPDATE payments SET state = 'failed', error_code = ?, error = ?, updated = ? "
            "WHERE idempotency_key = ? AND state = 'pending'",
            (code, error, time.time(), key),
        )
        found = self.payment(key)
        assert found is not None
        return found

    def note_failed_seen(self, key: str, when: float | None) -> None:
        self.db.execute(
            "UPDATE payments SET failed_seen = ? WHERE idempotency_key = ?", (when, key)
        )

    def pending_payments(self) -> list[Payment]:
        rows = self.db.execute(_SELECT + "WHERE state = 'pending' ORDER BY id").fetchall()
        return [Payment(*r) for r in rows]

    def list_payments(
        self, *, member: str | None, state: str | None, after: int, limit: int
    ) -> list[Payment]:
        rows = self.db.execute(
            _SELECT + "WHERE id > ? AND (? IS NULL OR member = ?) AND (? IS NULL OR state = ?) "
            "ORDER BY id LIMIT ?",
            (after, member, member, state, state, limit),
        ).fetchall()
        return [Payment(*r) for r in rows]

    def payment_counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT state, COUNT(*) FROM payments GROUP BY state").fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    # -- reconciler state ------------------------------------------------------------------
    def get_state(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM api_state WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_state(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO api_state (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def channels(self) -> dict[str, tuple[str, str, bool]]:
        """channel id → (peer id, state, peer connected) as last published."""
        rows = self.db.execute(
            "SELECT channel_id, peer_id, state, peer_connected FROM channels"
        ).fetchall()
        return {str(r[0]): (str(r[1]), str(r[2]), bool(r[3])) for r in rows}

    def set_channel(self, channel_id: str, peer_id: str, state: str, connected: bool) -> None:
        self.db.execute(
            "INSERT INTO channels (channel_id, peer_id, state, peer_connected) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET "
            "peer_id = excluded.peer_id, state = excluded.state, "
            "peer_connected = excluded.peer_connected",
            (channel_id, peer_id, state, int(connected)),
        )
