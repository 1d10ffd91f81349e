"""Engine settings of the exchange database: SQLite's durability level is the caller's choice."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from scnode_exchange.db import make_engine


@pytest.mark.parametrize(("level", "code"), [("NORMAL", 1), ("FULL", 2), ("EXTRA", 3)])
def test_sqlite_synchronous_level_is_applied_with_wal(
    tmp_path: Path, level: str, code: int
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}", sqlite_synchronous=level)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar() == code
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        engine.dispose()


def test_the_default_is_normal_and_unknown_levels_are_refused(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 1
    finally:
        engine.dispose()
    with pytest.raises(ValueError, match="sqlite_synchronous"):
        make_engine(f"sqlite:///{tmp_path / 'y.sqlite3'}", sqlite_synchronous="OFF")
