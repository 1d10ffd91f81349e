"""Revision 0003 creates exactly the deposit tables the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from scnode_exchange.db import Base, make_engine, upgrade
from scnode_exchange.deposits.models import Deposit, DepositAddress, DepositAlert, DepositCursor

TABLES = {m.__tablename__ for m in (Deposit, DepositAddress, DepositAlert, DepositCursor)}


def test_0003_matches_the_deposit_models(exchange_db_url: str) -> None:
    upgrade(exchange_db_url)
    engine = make_engine(exchange_db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = [d for d in compare_metadata(context, Base.metadata) if _is_deposits(d)]
            assert diff == []
            assert set(inspect(conn).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def _is_deposits(diff: object) -> bool:
    return any(name in repr(diff) for name in TABLES)
