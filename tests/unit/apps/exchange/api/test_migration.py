"""Migration 0005 creates exactly the owner audit log the model describes, and goes back.

Only the owner audit log is compared: the other packages' tables are their tests' business
(and a package added later must not break this one)."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import scnode_exchange.ledger.models
import scnode_exchange.owner.models  # noqa: F401  (the model the schema must match)
from scnode_exchange.db import Base, alembic_config, make_engine, upgrade


def _owner_audit_only(obj: Any, _name: Any, type_: str, _reflected: bool, _other: Any) -> bool:
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return getattr(table, "name", None) == "owner_audit_log"


def test_head_matches_the_models_and_0005_goes_back(exchange_db_url: str) -> None:
    upgrade(exchange_db_url)
    engine = make_engine(exchange_db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_object": _owner_audit_only}
            )
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
