"""Fixtures: one simnet lightningd with a channel to the simulated SC Cluster hub per test
module (starting the pair is most of the cost), one Lightning API process per module for the
tests that leave it running, and `start_lightning_api` for a fresh one — its own state file,
keys and port — in tests that kill it or set other settings. Tests use their own members and
keys, so the shared node's history never decides an assertion."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from simnet.pytest_lightning import ChainHandle, LightningNodeHandle, open_channel
from tests.integration.lightning_api.handle import LightningApi, LightningPair

# on the hub's side of the 5,000,000 sat channel, so the outside world can pay the node
INBOUND_MSAT = 2_000_000_000


@pytest.fixture(scope="module")
def shared_pair() -> Iterator[LightningPair]:
    """(node, hub): node → hub channel of 5,000,000 sat, 2,000,000 sat of it on the hub's side."""
    # a short base: the RPC socket path must fit a unix socket address (108 bytes)
    base = Path(tempfile.mkdtemp(prefix="lnapi-", dir="/tmp"))
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


@pytest.fixture
def start_lightning_api(tmp_path: Path) -> Iterator[Callable[..., LightningApi]]:
    apis: list[LightningApi] = []

    def start(
        node: LightningNodeHandle, cluster_peer_id: str | None = None, **settings: str
    ) -> LightningApi:
        workdir = tmp_path / f"lightning-api-{len(apis)}"
        workdir.mkdir()
        api = LightningApi(node, workdir, cluster_peer_id, settings=settings)
        apis.append(api)
        return api.start()

    yield start
    for api in apis:
        api.stop()


@pytest.fixture(scope="module")
def ln_api(
    shared_pair: LightningPair, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LightningApi]:
    """An API in front of the module's node, shared by the module's tests that neither stop it
    nor need their own settings (an API process start is seconds on a loaded machine)."""
    node, hub = shared_pair
    # a short grace, so tests see failed payments become final within seconds
    api = LightningApi(
        node,
        tmp_path_factory.mktemp("lightning-api"),
        hub.node_id,
        settings={"UNSENT_GRACE_SECONDS": "1"},
    )
    api.start()
    yield api
    api.stop()
