"""The payout watcher against a real chain API process in front of the simnet chain stand-in:
coinbase rewards to the node wallet are split once they have 100 confirmations, in block
order, and an immature one is not split until a block matures it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.chainclient import ChainApiClient
from scnode_exchange.ledger import SATS, Ledger, verify
from scnode_exchange.mining import MiningService
from scnode_exchange.mining.watcher import ChainRewardSource, PayoutWatcher
from simnet.pytest_chain import ChainNode
from tests.integration.chain_api.handle import ChainApi


@pytest.fixture
def chain_api(
    start_chain_node: Callable[..., ChainNode], tmp_path: Path
) -> Iterator[tuple[ChainNode, ChainApi]]:
    node = start_chain_node(coin="bitcoin")
    node.rpc("createwallet", "wallet")
    node.rpc("createwallet", "elsewhere")
    api = ChainApi(node, tmp_path, "btc")
    api.start()
    try:
        yield node, api
    finally:
        api.stop()


def test_coinbase_rewards_are_split_when_mature(
    chain_api: tuple[ChainNode, ChainApi],
    sessions: sessionmaker[Session],
    members: tuple[int, int, int],
) -> None:
    node, api = chain_api
    alice, _, _ = members
    mining = MiningService(sessions)
    mining.register(alice, "btc", "rig")
    ours = node.rpc("getnewaddress", wallet="wallet")
    theirs = node.rpc("getnewaddress", wallet="elsewhere")
    node.mine(3, ours)  # three pool blocks paying the node
    node.mine(98, theirs)  # 101, 100 and 99 confirmations
    asked: list[tuple[int, int]] = []

    async def work(pool: str, start: int, end: int) -> Mapping[str, float]:
        asked.append((start, end))
        return {"rig": 1.0}

    async def main() -> tuple[list[str], list[str]]:
        client = ChainApiClient(api.url, api.tokens["read"])
        try:
            watcher = PayoutWatcher(
                mining, "btc", ChainRewardSource(client, "btc"), work, first_window_start=0
            )
            first = await watcher.poll_once()
            await asyncio.to_thread(node.mine, 1, theirs)
            second = await watcher.poll_once()
            assert await watcher.poll_once() == []
            return first, second
        finally:
            await client.aclose()

    first, second = asyncio.run(main())
    assert len(first) == 2 and len(second) == 1
    payouts = {p.payout_id: p for p in mining.payouts()}
    assert set(payouts) == {*first, *second}
    subsidy = 50 * 10**8  # regtest block subsidy
    assert all(p.amount == subsidy for p in payouts.values())
    # windows from 0 in block order: each starts where the previous ended, or is the same
    # window when blocks share a second (regtest mines them back to back)
    assert asked[0][0] == 0
    assert all(b == a or b[0] == a[1] for a, b in itertools.pairwise(asked))
    with sessions() as session:
        assert Ledger(session).member_account(alice, SATS).balance == 3 * subsidy
        assert verify(session).ok
