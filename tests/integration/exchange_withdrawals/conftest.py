"""One funded Bitcoin regtest stand-in and one chain API process per module (each test has
its own exchange database and send-key prefix)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture
def exchange(chain: tuple[ChainNode, ChainApi], tmp_path: Path) -> Iterator[Exchange]:
    """An exchange database on SQLite (the service's transactions are tested on PostgreSQL
    too in tests/unit/apps/exchange/withdrawals; here the process is killed, which SQLite's
    WAL and PostgreSQL's transactions survive alike — kept to one backend for the time
    budget)."""
    node, api = chain
    ex = Exchange(tmp_path, api, node, f"sqlite:///{tmp_path / 'exchange.sqlite3'}")
    try:
        yield ex
    finally:
        ex.close()
