"""Fixtures: a chain API process per test, and a funded chain daemon behind it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from simnet.pytest_chain import ChainNode
from tests.integration.chain_api.handle import ChainApi


@pytest.fixture
def start_chain_api(tmp_path: Path) -> Iterator[Callable[..., ChainApi]]:
    apis: list[ChainApi] = []

    def start(node: ChainNode, prefix: str = "btc", **settings: str) -> ChainApi:
        workdir = tmp_path / f"api-{len(apis)}"
        workdir.mkdir()
        api = ChainApi(node, workdir, prefix, settings=settings)
        apis.append(api)
        return api.start()

    yield start
    for api in apis:
        api.stop()


@pytest.fixture
def funded_node(start_chain_node: Callable[..., ChainNode]) -> ChainNode:
    """Bitcoin v30 regtest with the node wallet `wallet` holding mature coins."""
    node = start_chain_node(coin="bitcoin")
    node.rpc("createwallet", "wallet")
    node.mine(101, node.rpc("getnewaddress", wallet="wallet"))
    return node
