"""An exchange app on a throwaway database: ``node`` on SQLite and on PostgreSQL (when
configured) for the tests where the database matters (money, scoping, candles, concurrency);
``lite_node`` on SQLite only for wiring tests (auth, limits, routes), to keep the suite fast."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from scnode_exchange.api.app import create_app
from tests.unit.apps.exchange.api.node import Node, make_settings


@pytest.fixture
def node(exchange_db_url: str, tmp_path: Path) -> Iterator[Node]:
    settings, owner_key = make_settings(tmp_path, exchange_db_url)
    with TestClient(create_app(settings)) as client:
        yield Node(client, owner_key, settings)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database (backend-independent tests)."""
    return f"sqlite:///{tmp_path / 'exchange.sqlite3'}"


@pytest.fixture
def lite_node(sqlite_url: str, tmp_path: Path) -> Iterator[Node]:
    settings, owner_key = make_settings(tmp_path, sqlite_url)
    with TestClient(create_app(settings)) as client:
        yield Node(client, owner_key, settings)
