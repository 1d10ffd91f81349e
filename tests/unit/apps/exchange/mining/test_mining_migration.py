"""Revision 0007 creates exactly the mining tables the models describe and drops them again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from scnode_exchange.db import Base, alembic_config, make_engine, upgrade
from scnode_exchange.mining.models import (
    MiningPayout,
    MiningPayoutPart,
    MiningPayoutWork,
    MiningWorker,
)

TABLES = {m.__tablename__ for m in (MiningWorker, MiningPayout, MiningPayoutWork, MiningPayoutPart)}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_0007_matches_the_mining_models_and_downgrades(exchange_db_url: str) -> None:
    upgrade(exchange_db_url)
    engine = make_engine(exchange_db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = [
                d
                for d in compare_metadata(context, Base.metadata)
                if any(name in repr(d) for name in TABLES)
            ]
            assert diff == []
    finally:
        engine.dispose()
    assert _tables(exchange_db_url) >= TABLES
    command.downgrade(alembic_config(exchange_db_url), "0006")
    assert not _tables(exchange_db_url) & TABLES
    upgrade(exchange_db_url)
    assert _tables(exchange_db_url) >= TABLES
