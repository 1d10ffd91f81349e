"""The Alembic migrations create exactly the schema the models describe."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, inspect
from sqlalchemy.exc import OperationalError

import scnode_exchange
from scnode_exchange.db import Base, make_engine, upgrade

# Every package's models, whichever tests ran before in this process: the schema must match
# all of them, not only those some earlier import happened to register.
for _module in pkgutil.walk_packages(scnode_exchange.__path__, "scnode_exchange."):
    if _module.name.endswith(".models"):
        importlib.import_module(_module.name)


def test_upgrade_head_on_empty_database_matches_the_models(exchange_db_url: str) -> None:
    upgrade(exchange_db_url)
    engine = make_engine(exchange_db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert diff == []
    assert {"accounts", "postings", "holds", "orders", "trades"} <= set(Base.metadata.tables)
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_upgrade_is_idempotent(exchange_db_url: str) -> None:
    upgrade(exchange_db_url)
    upgrade(exchange_db_url)


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wal.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_sqlite_writers_take_the_lock_at_begin(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE: a second writer cannot even begin while the first is open, so no
    transaction fails at COMMIT after having read balances another writer changes."""
    url = f"sqlite:///{tmp_path / 'lock.sqlite3'}"
    upgrade(url)
    first = make_engine(url)
    second = make_engine(url)
    event.listen(second, "connect", lambda dbapi, _rec: dbapi.execute("PRAGMA busy_timeout=100"))
    try:
        with first.begin(), pytest.raises(OperationalError, match="locked"), second.begin():
            pass
    finally:
        first.dispose()
        second.dispose()
