"""The Alembic migrations create exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import scnode_exchange.ledger.models
import scnode_exchange.trading.models  # noqa: F401  (the models the schema must match)
from scnode_exchange.db import Base, make_engine, upgrade


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
