"""The dashboard's own state in one SQLite file: sign-in identities (OIDC subject or local
account → exchange member handle), TOTP secrets, hashed recovery codes, server-side sessions
and the audit log of sign-in events. Money data stays in the exchange.

The browser holds only a random session id; the table stores its SHA-256, so a copy of the
database does not give live sessions. The file is created 0600.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('oidc', 'local')),
    issuer TEXT,
    subject TEXT,
    username TEXT NOT NULL,
    member_handle TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    totp_secret TEXT,
    totp_pending TEXT,
    totp_last_step INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    role TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'owner')),
    UNIQUE (issuer, subject)
);
CREATE UNIQUE INDEX IF NOT EXISTS users_local ON users (username) WHERE kind = 'local';
CREATE TABLE IF NOT EXISTS recovery_codes (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at REAL
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER REFERENCES users (id) ON DELETE CASCADE,
    stage TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created REAL NOT NULL,
    last_seen REAL NOT NULL,
    reauth_at REAL NOT NULL DEFAULT 0,
    ip TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    oidc_state TEXT,
    oidc_nonce TEXT,
    oidc_verifier TEXT,
    exchange_token TEXT,
    exchange_token_exp INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    user_id INTEGER,
    event TEXT NOT NULL,
    ip TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_user ON audit (user_id, id);
"""

# session stages: signed in with the first factor only ('totp': code next, 'enrol': no TOTP
# yet) or completely ('full'); 'anon' = before sign-in (carries the OIDC state and the CSRF
# token of the login forms)
ANON, TOTP, ENROL, FULL = "anon", "totp", "enrol", "full"
# user roles: a member (their own exchange account) or the node's owner (the /owner pages; an
# owner has no exchange member account, its member_handle is "owner:<username>")
MEMBER, OWNER = "member", "owner"


@dataclass(frozen=True)
class User:
    id: int
    kind: str
    issuer: str | None
    subject: str | None
    username: str
    member_handle: str
    password_hash: str | None
    totp_secret: str | None
    totp_pending: str | None
    totp_last_step: int
    failures: int
    locked_until: float
    role: str = MEMBER

    @property
    def has_totp(self) -> bool:
        return self.totp_secret is not None

    @property
    def is_owner(self) -> bool:
        return self.role == OWNER


@dataclass(frozen=True)
class Session:
    id_hash: str
    user_id: int | None
    stage: str
    csrf: str
    created: float
    last_seen: float
    reauth_at: float
    ip: str
    user_agent: str
    oidc_state: str | None
    oidc_nonce: str | None
    oidc_verifier: str | None
    exchange_token: str | None
    exchange_token_exp: int


@dataclass(frozen=True)
class AuditEvent:
    id: int
    ts: float
    user_id: int | None
    event: str
    ip: str
    detail: str


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii", "replace")).hexdigest()


class Store:
    """All reads and writes of the dashboard's SQLite file (one connection, one lock: the
    queries are tiny and the dashboard is one process)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(SCHEMA)
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(users)")}
        if "role" not in columns:  # a file from before owners had accounts
            self._db.execute(
                "ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'member'"
                " CHECK (role IN ('member', 'owner'))"
            )

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._db.execute(sql, args).fetchone()
            return row

    # ------------------------------------------------------------------ users
    def user(self, user_id: int) -> User | None:
        row = self._one("SELECT * FROM users WHERE id = ?", user_id)
        return _user(row)

    def oidc_user(self, issuer: str, subject: str) -> User | None:
        row = self._one("SELECT * FROM users WHERE issuer = ? AND subject = ?", issuer, subject)
        return _user(row)

    def local_user(self, username: str) -> User | None:
        row = self._one("SELECT * FROM users WHERE kind = 'local' AND username = ?", username)
        return _user(row)

    def user_by_handle(self, handle: str) -> User | None:
        return _user(self._one("SELECT * FROM users WHERE member_handle = ?", handle))

    def add_oidc_user(self, issuer: str, subject: str, username: str, handle: str) -> User:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO users (kind, issuer, subject, username, member_handle, created)"
                " VALUES ('oidc', ?, ?, ?, ?, ?)",
                (issuer, subject, username, handle, time.time()),
            )
            user_id = cur.lastrowid
        found = self.user(int(user_id or 0))
        assert found is not None
        return found

    def add_local_user(
        self, username: str, password_hash: str, handle: str, role: str = MEMBER
    ) -> User:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO users (kind, username, member_handle, password_hash, created, role)"
                " VALUES ('local', ?, ?, ?, ?, ?)",
                (username, handle, password_hash, time.time(), role),
            )
            user_id = cur.lastrowid
        found = self.user(int(user_id or 0))
        assert found is not None
        return found

    def set_password(self, user_id: int, password_hash: str) -> None:
        """A local account's new password hash."""
        with self._tx() as db:
            db.execute(
                "UPDATE users SET password_hash = ? WHERE id = ? AND kind = 'local'",
                (password_hash, user_id),
            )

    def set_totp_pending(self, user_id: int, secret: str | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE users SET totp_pending = ? WHERE id = ?", (secret, user_id))

    def activate_totp(self, user_id: int, step: int, code_hashes: list[str]) -> None:
        """The pending secret becomes the user's; the recovery codes are replaced."""
        with self._tx() as db:
            db.execute(
                "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL,"
                " totp_last_step = ? WHERE id = ? AND totp_pending IS NOT NULL",
                (step, user_id),
            )
            db.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))
            db.executemany(
                "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)",
                [(user_id, h) for h in code_hashes],
            )

    def replace_recovery_codes(self, user_id: int, code_hashes: list[str]) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))
            db.executemany(
                "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)",
                [(user_id, h) for h in code_hashes],
            )

    def unused_recovery_codes(self, user_id: int) -> list[tuple[int, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, code_hash FROM recovery_codes WHERE user_id = ? AND used_at IS NULL",
                (user_id,),
            ).fetchall()
        return [(int(r["id"]), str(r["code_hash"])) for r in rows]

    def use_recovery_code(self, code_id: int) -> bool:
        """Mark a code used; False if it already was (two requests racing)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE recovery_codes SET used_at = ? WHERE id = ? AND used_at IS NULL",
                (time.time(), code_id),
            )
            return cur.rowcount == 1

    def use_totp_step(self, user_id: int, step: int) -> bool:
        """Record the step of an accepted code; False if it (or a later one) was used."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE users SET totp_last_step = ? WHERE id = ? AND totp_last_step < ?",
                (step, user_id, step),
            )
            return cur.rowcount == 1

    def record_failure(self, user_id: int, max_failures: int, lockout_seconds: float) -> bool:
        """Count a bad password or code; True when this one locks the account."""
        with self._tx() as db:
            row = db.execute("SELECT failures FROM users WHERE id = ?", (user_id,)).fetchone()
            failures = int(row["failures"]) + 1 if row else 1
            locked = failures >= max_failures
            db.execute(
                "UPDATE users SET failures = ?, locked_until = ? WHERE id = ?",
                (
                    0 if locked else failures,
                    time.time() + lockout_seconds if locked else 0,
                    user_id,
                ),
            )
            return locked

    def clear_failures(self, user_id: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE users SET failures = 0 WHERE id = ?", (user_id,))

    # --------------------------------------------------------------- sessions
    def new_session(self, ip: str, user_agent: str) -> tuple[str, Session]:
        """A fresh anonymous session: the id for the cookie, and its row."""
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO sessions (id_hash, stage, csrf, created, last_seen, ip, user_agent)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (session_hash(session_id), ANON, secrets.token_urlsafe(32), now, now, ip,
                 user_agent[:300]),
            )  # fmt: skip
        found = self.session(session_id)
        assert found is not None
        return session_id, found

    def session(self, session_id: str) -> Session | None:
        row = self._one("SELECT * FROM sessions WHERE id_hash = ?", session_hash(session_id))
        return None if row is None else Session(**dict(row))

    def touch(self, id_hash: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE sessions SET last_seen = ? WHERE id_hash = ?", (time.time(), id_hash)
            )

    def update_session(self, id_hash: str, **values: Any) -> None:
        allowed = {"stage", "user_id", "reauth_at", "oidc_state", "oidc_nonce",
                   "oidc_verifier", "exchange_token", "exchange_token_exp"}  # fmt: skip
        if not values or set(values) - allowed:
            raise ValueError(f"cannot update {sorted(set(values) - allowed)}")
        columns = ", ".join(f"{name} = ?" for name in values)
        with self._tx() as db:
            db.execute(
                f"UPDATE sessions SET {columns} WHERE id_hash = ?",  # noqa: S608 (names checked)
                (*values.values(), id_hash),
            )

    def promote(self, old: Session, user_id: int, stage: str, ip: str) -> tuple[str, Session]:
        """A new session id (and CSRF token) for a sign-in step: the pre-login id an attacker
        may have planted is never the signed-in one (session fixation)."""
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        with self._tx() as db:
            db.execute("DELETE FROM sessions WHERE id_hash = ?", (old.id_hash,))
            db.execute(
                "INSERT INTO sessions (id_hash, user_id, stage, csrf, created, last_seen,"
                " reauth_at, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_hash(session_id), user_id, stage, secrets.token_urlsafe(32),
                 now, now,
                 now if stage == FULL else 0, ip, old.user_agent),
            )  # fmt: skip
        found = self.session(session_id)
        assert found is not None
        return session_id, found

    def delete_session(self, id_hash: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))

    def user_sessions(self, user_id: int) -> list[Session]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM sessions WHERE user_id = ? AND stage = ? ORDER BY last_seen DESC",
                (user_id, FULL),
            ).fetchall()
        return [Session(**dict(r)) for r in rows]

    def delete_user_session(self, user_id: int, id_hash: str) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM sessions WHERE user_id = ? AND id_hash = ?", (user_id, id_hash)
            )
            return cur.rowcount == 1

    def purge_sessions(self, now: float, idle: float, absolute: float, unfinished: float) -> int:
        """Delete the sessions that have ended (the same rules as a request finds them)."""
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM sessions WHERE (stage = ? AND (last_seen < ? OR created < ?))"
                " OR (stage != ? AND created < ?)",
                (FULL, now - idle, now - absolute, FULL, now - unfinished),
            )
            return cur.rowcount

    # ------------------------------------------------------------------ audit
    def audit(self, event: str, user_id: int | None, ip: str, detail: str = "") -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO audit (ts, user_id, event, ip, detail) VALUES (?, ?, ?, ?, ?)",
                (time.time(), user_id, event, ip, detail[:500]),
            )

    def end_other_sessions(self, user_id: int, keep: str) -> int:
        """End every session of the user (also unfinished sign-ins) but ``keep`` (an id hash)."""
        with self._tx() as db:
            return db.execute(
                "DELETE FROM sessions WHERE user_id = ? AND id_hash != ?", (user_id, keep)
            ).rowcount

    def end_user_sessions(self, user_id: int) -> int:
        """Sign a user out everywhere (the owner froze their member account)."""
        with self._tx() as db:
            return db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,)).rowcount

    def audit_page(
        self, event: str | None = None, user_id: int | None = None,
        before_id: int | None = None, limit: int = 50,
    ) -> list[tuple[AuditEvent, str | None]]:  # fmt: skip
        """Audit rows newest first with the user's name, filtered and paged by ``before_id``."""
        sql = (
            "SELECT a.*, u.username AS who FROM audit a LEFT JOIN users u ON u.id = a.user_id"
            " WHERE (? IS NULL OR a.event = ?) AND (? IS NULL OR a.user_id = ?)"
            " AND (? IS NULL OR a.id < ?) ORDER BY a.id DESC LIMIT ?"
        )
        args = (event, event, user_id, user_id, before_id, before_id, limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        out = []
        for row in rows:
            values = dict(row)
            who = values.pop("who")
            out.append((AuditEvent(**values), who))
        return out

    def audit_events(self, user_id: int | None = None, limit: int = 50) -> list[AuditEvent]:
        with self._lock:
            if user_id is None:
                rows = self._db.execute(
                    "SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM audit WHERE user_id = ? ORDER BY id DESC LIMIT ?",
                    (user_id, limit),
                ).fetchall()
        return [AuditEvent(**dict(r)) for r in rows]


def _user(row: sqlite3.Row | None) -> User | None:
    if row is None:
        return None
    values = dict(row)
    values.pop("created")
    return User(**values)
