"""An exchange app on a throwaway database (SQLite, and PostgreSQL when configured)."""

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
