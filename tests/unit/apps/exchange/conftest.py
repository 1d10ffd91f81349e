"""Databases for the exchange tests: SQLite always, PostgreSQL too when
``SCNODE_TEST_POSTGRES_URL`` names a server (e.g. ``postgresql+psycopg://root@/postgres?host=/var/run/postgresql``).

Each test gets a throwaway database migrated to head by Alembic: a temporary SQLite file, or
a freshly created PostgreSQL database that is dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.db import make_engine, make_sessionmaker, upgrade
from scnode_exchange.ledger import AssetSpec, Ledger

POSTGRES_URL = os.environ.get("SCNODE_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]


def _postgres_database() -> Iterator[str]:
    admin = make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = "scnode_test_" + secrets.token_hex(6)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def exchange_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database (SQLite file, or a throwaway PostgreSQL database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'exchange.sqlite3'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def exchange_engine(exchange_db_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to head."""
    upgrade(exchange_db_url)
    engine = make_engine(exchange_db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(exchange_engine: Engine) -> sessionmaker[Session]:
    """A session factory on a migrated database with the built-in assets and a micro asset."""
    factory = make_sessionmaker(exchange_engine)
    with factory.begin() as session:
        Ledger(session).ensure_assets([AssetSpec("MICRO", "Test microcurrency", 8, "musat")])
    return factory
