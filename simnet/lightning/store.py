"""The stand-in's database: a real SQLite file (`wallet=sqlite3://<main>[:<backup>]`).

Objects are JSON rows keyed by (kind, key). After every committed change the main database is
copied into the backup file with SQLite's online backup API, so the second file is always a
consistent copy, like lightningd's sqlite3 `main:backup` mode.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL,
                                    PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS vars (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def parse_wallet_option(value: str | None, network_dir: Path) -> tuple[Path, Path | None]:
    """(main, backup) paths of `wallet=sqlite3://main[:backup]` (default lightningd.sqlite3)."""
    if not value:
        return network_dir / "lightningd.sqlite3", None
    if not value.startswith("sqlite3://"):
        raise SystemExit(f"lightningd: Unsupported wallet DSN {value} (simulation: sqlite3 only)")
    main, _, backup = value[len("sqlite3://") :].partition(":")
    # relative to <lightning-dir>/<network>, where lightningd runs
    return network_dir / main, (network_dir / backup if backup else None)


class Store:
    """JSON objects in SQLite, mirrored to a backup database after each commit."""

    def __init__(self, main: Path, backup: Path | None) -> None:
        main.parent.mkdir(parents=True, exist_ok=True)
        self.main_path = main
        self.backup_path = backup
        self.db = sqlite3.connect(main, isolation_level=None)
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._backup_db: sqlite3.Connection | None = None
        self._depth = 0
        self._dirty = False
        if backup is not None:
            backup.parent.mkdir(parents=True, exist_ok=True)
            self._copy_to_backup()

    def _copy_to_backup(self) -> None:
        if self.backup_path is None:
            return
        if self._backup_db is None:
            self._backup_db = sqlite3.connect(self.backup_path)
            self._backup_db.execute("PRAGMA synchronous=NORMAL")
        self.db.backup(self._backup_db)

    @contextmanager
    def txn(self) -> Iterator[None]:
        """Group writes into one transaction (nested use joins the outer one)."""
        if self._depth == 0:
            self.db.execute("BEGIN")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self.db.execute("COMMIT")
            if self._dirty:
                self._copy_to_backup()
                self._dirty = False

    def put(self, kind: str, key: str | int, body: dict[str, Any]) -> None:
        """Insert or replace one object."""
        with self.txn():
            self.db.execute(
                "INSERT OR REPLACE INTO objects (kind, key, body) VALUES (?, ?, ?)",
                (kind, str(key), json.dumps(body)),
            )
            self._dirty = True

    def delete(self, kind: str, key: str | int) -> None:
        """Remove one object."""
        with self.txn():
            self.db.execute("DELETE FROM objects WHERE kind = ? AND key = ?", (kind, str(key)))
            self._dirty = True

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Every object of a kind, in insertion order."""
        rows = self.db.execute(
            "SELECT body FROM objects WHERE kind = ? ORDER BY rowid", (kind,)
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def get_var(self, name: str) -> str | None:
        """A scalar setting (node id, block height, counters)."""
        row = self.db.execute("SELECT value FROM vars WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_var(self, name: str, value: str | int) -> None:
        """Store a scalar setting."""
        with self.txn():
            self.db.execute(
                "INSERT OR REPLACE INTO vars (name, value) VALUES (?, ?)", (name, str(value))
            )
            self._dirty = True

    def close(self) -> None:
        """Close the database (after a final backup copy)."""
        self._copy_to_backup()
        if self._backup_db is not None:
            self._backup_db.close()
        self.db.close()
