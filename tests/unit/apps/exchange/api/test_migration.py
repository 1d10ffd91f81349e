"""Migration 0005 creates exactly the owner audit log the model describes, and goes back."""

from __future__ import annotations

import contextlib
import importlib

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import scnode_exchange.ledger.models
import scnode_exchange.owner.models
import scnode_exchange.trading.models  # noqa: F401  (every model the schema must match)
from scnode_exchange.db import Base, alembic_config, make_engine, upgrade

for _package in ("scnode_exchange.deposits.models", "scnode_exchange.withdrawals.models"):
    # the sibling packages' tables are in the same schema once they exist
    with contextlib.suppress(ModuleNotFoundError):
        importlib.import_module(_package)


def test_head_matches_the_models_and_0005_goes_back(exchange_db_url: str) -> None:
    upgrade(exchange_db_url)
    engine = make_engine(exchange_db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            assert "owner_audit_log" in inspect(conn).get_table_names()
        command.downgrade(alembic_config(exchange_db_url), "0004")
        with engine.connect() as conn:
            assert "owner_audit_log" not in inspect(conn).get_table_names()
        upgrade(exchange_db_url)
        with engine.connect() as conn:
            assert "owner_audit_log" in inspect(conn).get_table_names()
    finally:
        engine.dispose()
