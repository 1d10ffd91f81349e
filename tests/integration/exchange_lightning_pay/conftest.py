"""Fixtures of the Lightning payment tests: the simnet lightningd with its channel to the
simulated SC Cluster hub (once per module), a real Lightning API process in front of it with
one key for the exchange (read, invoice, pay — as the exchange's settings carry one key), and
the exchange app process (``python -m scnode_exchange``) configured for Lightning.

Members are made through the owner API and sign in through the lab login, as a user would."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from simnet.pytest_lightning import ChainHandle, LightningNodeHandle, open_channel
from tests.integration.exchange_e2e.handle import postgres_database
from tests.integration.exchange_lightning_pay.harness import (
    INBOUND_MSAT,
    Exchange,
    ExchangeLightningApi,
    PayExchangeProcess,
    exchange_settings,
)
from tests.integration.lightning_api.handle import LightningApi, LightningPair

POSTGRES_URL = os.environ.get("SCNODE_TEST_POSTGRES_URL", "")


@pytest.fixture(scope="module")
def shared_pair() -> Iterator[LightningPair]:
    """(node, hub): node → hub channel of 5,000,000 sat, 2,000,000 sat of it on the hub's side."""
    base = Path(tempfile.mkdtemp(prefix="lnpay-", dir="/tmp"))  # short: unix socket paths
    chain = ChainHandle(base)
    handles: list[LightningNodeHandle] = []
    try:
        for alias in ("hub", "node"):
            (base / alias).mkdir()

        def start(alias: str, role: str, zmq: bool) -> LightningNodeHandle:
            handle = LightningNodeHandle(base / alias, chain, alias=alias, role=role, zmq=zmq)
            handles.append(handle)
            return handle

        with ThreadPoolExecutor(2) as pool:
            hub_future = pool.submit(start, "hub", "hub", False)
            node_future = pool.submit(start, "node", "node", True)
            hub, node = hub_future.result(), node_future.result()
        open_channel(node, hub)
        node.shift_channel_balance(INBOUND_MSAT)
        yield node, hub
    finally:
        for handle in handles:
            handle.stop()
        chain.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def ln_api(
    shared_pair: LightningPair, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LightningApi]:
    node, hub = shared_pair
    api = ExchangeLightningApi(
        node,
        tmp_path_factory.mktemp("lightning-api"),
        hub.node_id,
        settings={"UNSENT_GRACE_SECONDS": "1"},
    )
    api.start()
    yield api
    api.stop()


@pytest.fixture
def start_exchange(tmp_path: Path) -> Iterator[Callable[..., Exchange]]:
    """Start an exchange process of the test's own (its own database) in front of an API."""
    started: list[PayExchangeProcess] = []
    with contextlib.ExitStack() as stack:

        def start(api: LightningApi, database_url: str | None = None, **lightning: Any) -> Exchange:
            workdir = tmp_path / f"exchange-{len(started)}"
            workdir.mkdir()
            url = database_url or f"sqlite:///{workdir / 'exchange.sqlite3'}"
            process = PayExchangeProcess(workdir, url, exchange_settings(api, **lightning))
            process.other_logs.append(api.workdir / "api.log")
            started.append(process)
            process.start()
            return Exchange(process, api)

        stack.callback(lambda: [p.stop() for p in started])
        yield start


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty exchange database (parametrized indirectly with the backend): a SQLite file,
    or a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'exchange-db.sqlite3'}"
    else:
        with postgres_database(POSTGRES_URL) as url:
            yield url
