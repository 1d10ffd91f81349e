"""Database engine, sessions and schema migrations of the exchange.

SQLite (WAL) is the default; PostgreSQL is chosen by URL. Every write transaction on SQLite
starts with ``BEGIN IMMEDIATE`` so writers serialize at the start of the transaction instead of
failing at commit; on PostgreSQL the ledger locks the rows it changes (``SELECT ... FOR UPDATE``).

SQLite durability (``journal_mode=WAL``, ``synchronous=NORMAL`` by default): a commit appends
to the WAL file and returns without waiting for the disk; the WAL is synced at checkpoints. A
crash of the process (or a kill) loses nothing committed — the WAL is in the OS's page cache.
A power cut or kernel crash can lose the transactions committed since the last sync (the
database stays consistent: whole transactions vanish, never half of one), i.e. orders and
trades already acknowledged. ``make_engine(url, sqlite_synchronous="FULL")`` syncs the WAL at
every commit instead: nothing acknowledged is lost on power loss, each commit waits for the
disk, and group commit (``trading.group``) shares that wait among every order of a batch.
PostgreSQL's default (``synchronous_commit=on``) is the FULL case.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from alembic import command
from alembic.config import Config
from sqlalchemy import BigInteger, Engine, Integer, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every exchange table (one metadata for Alembic)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # amounts are BIGINT everywhere; SQLite's INTEGER is 64-bit and the rowid type for keys
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        int: BigInteger().with_variant(Integer(), "sqlite")
    }


SQLITE_SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA")


def _sqlite_connector(synchronous: str) -> Callable[[Any, Any], None]:
    if synchronous not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"sqlite_synchronous must be one of {SQLITE_SYNCHRONOUS}")

    def connect(dbapi_connection: Any, _record: Any) -> None:
        # let SQLAlchemy's "begin" hook issue BEGIN IMMEDIATE instead of pysqlite's deferred
        # BEGIN
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    return connect


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, *, sqlite_synchronous: str = "NORMAL", **kwargs: Any) -> Engine:
    """Create the engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

    ``sqlite_synchronous``: ``NORMAL`` (default) or ``FULL``/``EXTRA`` — see the module doc
    for what each means on power loss. Ignored for PostgreSQL."""
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connector(sqlite_synchronous))
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (the services return them)."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    """Programmatic Alembic configuration (no ``alembic.ini`` needed on the node)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema at ``url`` to ``revision`` (the first revision creates it)."""
    command.upgrade(alembic_config(url), revision)
