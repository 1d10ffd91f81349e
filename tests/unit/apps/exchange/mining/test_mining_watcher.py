"""The payout watcher: mature rewards split once, in block order, with contiguous windows;
immature and stale ones wait or are skipped; outages write nothing. And the chain API reward
source's reading of the upstream-compatible rewards route."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.ledger import AZC, Ledger
from scnode_exchange.mining import MiningService
from scnode_exchange.mining.watcher import ChainRewardSource, PayoutWatcher, Reward


class Rewards:
    def __init__(self) -> None:
        self.items: list[Reward] = []

    async def rewards(self) -> Sequence[Reward]:
        return list(self.items)


class Work:
    def __init__(self) -> None:
        self.asked: list[tuple[str, int, int]] = []
        self.down = False

    async def __call__(self, pool: str, start: int, end: int) -> Mapping[str, float]:
        if self.down:
            raise ConnectionError("stats API down")
        self.asked.append((pool, start, end))
        return {"rig": float(end - start)}


def test_mature_rewards_are_split_once_in_block_order(
    mining: MiningService, members: tuple[int, int, int], sessions: sessionmaker[Session]
) -> None:
    alice, _, _ = members
    mining.register(alice, "azc", "rig")
    rewards, work = Rewards(), Work()
    watcher = PayoutWatcher(mining, "azc", rewards, work, first_window_start=1_000, interval=0.01)
    rewards.items = [
        Reward("a" * 64, 1_000_000, 101, True, 1_600),
        Reward("b" * 64, 1_000_000, 99, True, 2_200),  # immature: waits, and so does c
        Reward("c" * 64, 1_000_000, 100, True, 2_800),
        Reward("d" * 64, 1_000_000, 300, True, 900, stale=True),
    ]
    assert asyncio.run(watcher.poll_once()) == ["a" * 64]
    assert asyncio.run(watcher.poll_once()) == []
    work.down = True
    rewards.items[1] = Reward("b" * 64, 1_000_000, 100, True, 2_200)
    with pytest.raises(ConnectionError):  # surfaces to run(), which retries next pass
        asyncio.run(watcher.poll_once())
    assert mining.find("azc", "b" * 64) is None
    work.down = False

    async def run_briefly() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(watcher.run(stop))
        for _ in range(500):
            if mining.find("azc", "c" * 64) is not None:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(run_briefly())
    assert work.asked == [("azc", 1_000, 1_600), ("azc", 1_600, 2_200), ("azc", 2_200, 2_800)]
    assert [p.payout_id for p in mining.payouts()] == ["c" * 64, "b" * 64, "a" * 64]
    assert mining.find("azc", "d" * 64) is None
    with sessions() as session:
        # 3 payouts, 2.5 % fee each, all work is alice's
        assert Ledger(session).member_account(alice, AZC).balance == 3 * 975_000


class FakeChain:
    def __init__(self, answer: dict[str, Any], times: dict[str, int]) -> None:
        self.answer, self.times, self.lookups = answer, times, 0

    async def request(self, method: str, path: str) -> Any:
        assert (method, path) == ("GET", "/v1/az/blocks/rewards?limit=1000")
        return self.answer

    async def transaction(self, txid: str) -> dict[str, Any]:
        self.lookups += 1
        return {"txid": txid, "time": self.times[txid]}


def test_chain_reward_source_reads_the_rewards_route() -> None:
    answer = {
        "rewards": [
            {"txid": "b" * 64, "amount_sats": 700, "confirmations": 5, "blockheight": 216},
            {"txid": "a" * 64, "amount_sats": 300, "confirmations": 120, "blockheight": 101},
            {"txid": "a" * 64, "amount_sats": 200, "confirmations": 120, "blockheight": 101},
            {"txid": "c" * 64, "amount_sats": 900, "confirmations": 0, "stale": True},
            # same block time as a later block: block height decides the order
            {"txid": "0" * 64, "amount_sats": 100, "confirmations": 3, "blockheight": 218},
        ],
        "maturity_confirmations": 100,
    }
    chain = FakeChain(answer, {"a" * 64: 2_000, "b" * 64: 2_600, "c" * 64: 2_300, "0" * 64: 2_600})
    source = ChainRewardSource(chain, "az")
    first = asyncio.run(source.rewards())
    assert first == [
        Reward("a" * 64, 500, 120, True, 2_000, height=101),  # two outputs, one coinbase
        Reward("b" * 64, 700, 5, True, 2_600, height=216),
        Reward("0" * 64, 100, 3, True, 2_600, height=218),
    ]
    asyncio.run(source.rewards())
    assert chain.lookups == 3  # block times are looked up once


def test_blocks_of_the_same_second_share_the_previous_window(
    mining: MiningService, members: tuple[int, int, int], sessions: sessionmaker[Session]
) -> None:
    alice, _, _ = members
    mining.register(alice, "azc", "rig")
    rewards, work = Rewards(), Work()
    watcher = PayoutWatcher(mining, "azc", rewards, work, first_window_start=1_000)
    rewards.items = [
        Reward("a" * 64, 1_000, 200, True, 1_600),
        Reward("b" * 64, 1_000, 199, True, 1_600),  # found in the same second
    ]
    assert asyncio.run(watcher.poll_once()) == ["a" * 64, "b" * 64]
    assert work.asked == [("azc", 1_000, 1_600), ("azc", 1_000, 1_600)]
    found = mining.find("azc", "b" * 64)
    assert found is not None and (found.window_start, found.window_end) == (1_000, 1_600)
    with sessions() as session:
        assert Ledger(session).member_account(alice, AZC).balance == 2 * 975
    # a first reward from before first_window_start is left for the owner
    early = Rewards()
    early.items = [Reward("c" * 64, 1_000, 198, True, 900)]
    btc = PayoutWatcher(mining, "btc", early, work, first_window_start=1_000)
    assert asyncio.run(btc.poll_once()) == []
    assert mining.find("btc", "c" * 64) is None
