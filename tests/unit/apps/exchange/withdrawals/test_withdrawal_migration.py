"""The 0004 migration creates exactly the withdrawal tables the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import scnode_exchange.ledger.models
import scnode_exchange.trading.models
import scnode_exchange.withdrawals.models  # noqa: F401  (the models the schema must match)
from scnode_exchange.db import Base, make_engine, upgrade


def test_withdrawal_tables_match_the_models(exchange_db_url: str) -> None:
    upgrade(exchange_db_url)
    engine = make_engine(exchange_db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    ours = [d for d in diff if "withdrawal" in repr(d)]
    assert ours == []
    assert {"withdrawals", "withdrawal_events"} <= tables


def test_downgrade_removes_them(exchange_db_url: str) -> None:
    from alembic import command

    from scnode_exchange.db import alembic_config

    upgrade(exchange_db_url, "0004")
    command.downgrade(alembic_config(exchange_db_url), "0003")
    engine = make_engine(exchange_db_url)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert not {"withdrawals", "withdrawal_events"} & tables
    upgrade(exchange_db_url, "0004")
