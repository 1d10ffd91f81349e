"""One funded Bitcoin regtest stand-in and one chain API process per module (each test has
its own exchange database and send-key prefix)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from scnode_exchange.db import make_engine
from simnet.pytest_chain import ChainNode
from tests.integration.chain_api.handle import ChainApi
from tests.integration.exchange_withdrawals.harness import Exchange


@pytest.fixture(scope="module")
def chain() -> Iterator[tuple[ChainNode, ChainApi]]:
    root = Path(tempfile.mkdtemp(prefix="scnode-wd-"))
    (root / "node").mkdir()
    (root / "api").mkdir()
    node = ChainNode(root / "node", "bitcoin", "regtest", None, {}, [])
    api: ChainApi | None = None
    try:
        node.start()
        node.rpc("createwallet", "wallet")
        node.mine(110, node.rpc("getnewaddress", wallet="wallet"))
        api = ChainApi(node, root / "api", "btc").start()
        yield node, api
    finally:
        if api is not None:
            api.stop()
        node.stop()
        node.kill()
        shutil.rmtree(root, ignore_errors=True)


POSTGRES_URL = os.environ.get("SCNODE_TEST_POSTGRES_URL", "")


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A throwaway PostgreSQL database on the test server."""
    admin = make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = "scnode_wd_" + secrets.token_hex(6)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def exchange(chain: tuple[ChainNode, ChainApi], tmp_path: Path) -> Iterator[Exchange]:
    """An exchange database on SQLite."""
    node, api = chain
    ex = Exchange(tmp_path, api, node, f"sqlite:///{tmp_path / 'exchange.sqlite3'}")
    try:
        yield ex
    finally:
        ex.close()


@pytest.fixture(params=["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"])
def any_exchange(
    request: pytest.FixtureRequest, chain: tuple[ChainNode, ChainApi], tmp_path: Path
) -> Iterator[Exchange]:
    """An exchange database on SQLite, and on PostgreSQL when SCNODE_TEST_POSTGRES_URL is set."""
    node, api = chain
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'exchange.sqlite3'}"
        else:
            url = stack.enter_context(postgres_database())
        ex = Exchange(tmp_path, api, node, url)
        stack.callback(ex.close)
        yield ex
