"""Fixtures: one simnet lightningd with a 5,000,000 sat channel to the simulated SC Cluster hub
(and 3,000,000 sat more in its on-chain wallet for the on-chain legs) per module, the simulated
cluster's rebalance endpoint (`python -m simnet.cluster rebalance`) and Lightning API processes
with auto-balancing on, each with its own state."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from simnet.pytest_lightning import ChainHandle, LightningNodeHandle, open_channel, wait_for
from tests.integration.lightning_api.handle import LightningApi, LightningPair
from tests.integration.lightning_rebalance.cluster import ClusterRebalance

CAPACITY_SAT = 5_000_000


@pytest.fixture(scope="module")
def rebalance_pair() -> Iterator[tuple[LightningNodeHandle, LightningNodeHandle, ChainHandle]]:
    base = Path(tempfile.mkdtemp(prefix="lnrb-", dir="/tmp"))  # short: unix socket paths
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
        open_channel(node, hub, CAPACITY_SAT)
        chain.pay(node.rpc.newaddr()["bech32"], 3_000_000)
        chain.mine(1)
        wait_for(
            lambda: (
                sum(
                    o["amount_msat"]
                    for o in node.rpc.listfunds()["outputs"]
                    if o["status"] == "confirmed"
                )
                >= 3_000_000_000
            ),
            15,
            "on-chain funds",
        )
        yield node, hub, chain
    finally:
        for handle in handles:
            handle.stop()
        chain.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pair(
    rebalance_pair: tuple[LightningNodeHandle, LightningNodeHandle, ChainHandle],
) -> LightningPair:
    node, hub, _ = rebalance_pair
    return node, hub


@pytest.fixture
def start_cluster(
    rebalance_pair: tuple[LightningNodeHandle, LightningNodeHandle, ChainHandle], tmp_path: Path
) -> Iterator[Callable[..., ClusterRebalance]]:
    _, hub, chain = rebalance_pair
    clusters: list[ClusterRebalance] = []

    def start(port: int | None = None) -> ClusterRebalance:
        workdir = tmp_path / f"cluster-{len(clusters)}"
        workdir.mkdir()
        cluster = ClusterRebalance(hub, chain, workdir)
        if port is not None:
            cluster.port = port
        clusters.append(cluster)
        return cluster.start()

    yield start
    for cluster in clusters:
        cluster.stop()


@pytest.fixture
def start_api(
    rebalance_pair: tuple[LightningNodeHandle, LightningNodeHandle, ChainHandle], tmp_path: Path
) -> Iterator[Callable[..., LightningApi]]:
    node, hub, _ = rebalance_pair
    apis: list[LightningApi] = []

    def start(cluster_url: str, **settings: str) -> LightningApi:
        workdir = tmp_path / f"lightning-api-{len(apis)}"
        workdir.mkdir()
        env = {
            "REBALANCE_ENABLED": "true",
            "REBALANCE_CLUSTER_URL": cluster_url,
            "REBALANCE_LOW": "0.4",
            "REBALANCE_HIGH": "0.6",
            "REBALANCE_MAX_SWAP_SAT": "900000",
            "REBALANCE_INTERVAL_SECONDS": "0.3",
            "REBALANCE_COOLDOWN_SECONDS": "1",
            "REBALANCE_DAILY_MAX_SAT": "5000000",
            "REBALANCE_DAILY_MAX_FEE_SAT": "20000",
            "UNSENT_GRACE_SECONDS": "1",
            **settings,
        }
        api = LightningApi(node, workdir, hub.node_id, settings=env)
        apis.append(api)
        return api.start()

    yield start
    for api in apis:
        api.stop()
