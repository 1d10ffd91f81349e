"""Migrate the exchange database before the app starts, with a backup first.

    python -m scnode_exchange.migrate --backup-dir DIR [--keep N] [--env-file FILE]

Reads ``SCNODE_EXCHANGE_DATABASE_URL`` (the app's env file). When the schema is behind the
migrations shipped with this release, the database is backed up into ``DIR`` first — SQLite
with its online backup API, PostgreSQL with ``pg_dump --format=custom`` — and then upgraded
(Alembic). Nothing to do (a new database, or one already at head) takes no backup. The
``scnode-exchange`` unit runs this as ``ExecStartPre``, so every start of a new release
migrates, and a failed migration keeps the old schema plus the backup and stops the start.
Prints one JSON line: ``{"before": rev|null, "after": rev, "backup": path|null}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from scnode_exchange.db import alembic_config, upgrade


class MigrateSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCNODE_EXCHANGE_", extra="ignore")

    database_url: str = "sqlite:////var/lib/scnode-exchange/exchange.sqlite3"


def current_revision(url: str) -> str | None:
    """The schema's Alembic revision (None: no database or no schema yet)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not (
        parsed.database and Path(parsed.database).exists()
    ):
        return None
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision(url: str) -> str:
    """The newest revision this release ships."""
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    if head is None:
        raise RuntimeError("the release ships no migrations")
    return head


def backup(url: str, directory: Path, label: str) -> Path:
    """Copy the database into ``directory`` (SQLite online backup or pg_dump)."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        dest = directory / f"exchange-{stamp}-{label}.sqlite3"
        source = sqlite3.connect(f"file:{parsed.database}?mode=ro", uri=True)
        target = sqlite3.connect(dest)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        return dest
    if parsed.get_backend_name() == "postgresql":
        if shutil.which("pg_dump") is None:
            raise RuntimeError("pg_dump not found: install postgresql-client to back up")
        dest = directory / f"exchange-{stamp}-{label}.pgdump"
        plain = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        subprocess.run(["pg_dump", "--format=custom", f"--file={dest}", plain], check=True)
        return dest
    raise RuntimeError(f"no backup method for {parsed.get_backend_name()}")


def prune(directory: Path, keep: int) -> None:
    """Keep the newest ``keep`` backups."""
    found = sorted(
        (p for p in directory.glob("exchange-*") if p.suffix in {".sqlite3", ".pgdump"}),
        key=lambda p: p.name,
        reverse=True,
    )
    for old in found[keep:]:
        old.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scnode-exchange-migrate", description=__doc__)
    parser.add_argument("--backup-dir", type=Path, required=True)
    parser.add_argument("--keep", type=int, default=5, help="backups kept (newest first)")
    parser.add_argument("--env-file", help="env file with SCNODE_EXCHANGE_DATABASE_URL")
    args = parser.parse_args(argv)
    url = MigrateSettings(_env_file=args.env_file).database_url  # type: ignore[call-arg]
    try:
        before = current_revision(url)
        head = head_revision(url)
        saved = None
        if before is not None and before != head:
            saved = backup(url, args.backup_dir, before)
            prune(args.backup_dir, max(args.keep, 1))
        if before != head:
            upgrade(url)
    except (OSError, RuntimeError, subprocess.CalledProcessError, sqlite3.Error) as exc:
        print(f"migration refused: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"before": before, "after": head, "backup": str(saved) if saved else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
