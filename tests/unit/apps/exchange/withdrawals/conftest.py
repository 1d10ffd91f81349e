"""The worker and API tests drive the same service transactions that ``test_withdrawal_service.py``
runs on SQLite AND PostgreSQL; they test the send logic and the HTTP layer, so they run on
SQLite only (``sqlite_only`` marker below) to keep the suite's wall time down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def sqlite_db_url(tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite file (the parent conftest's ``exchange_db_url`` minus PostgreSQL)."""
    yield f"sqlite:///{tmp_path / 'exchange.sqlite3'}"
