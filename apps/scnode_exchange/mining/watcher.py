"""Split pool payouts as they mature: the background job (``run(stop)``) of the mining split.

Every ``interval`` seconds the watcher asks its ``RewardSource`` for the node wallet's pool
rewards, oldest first, and splits each one that is mature (coinbase: 100 confirmations;
``MiningService`` checks it again) and not split yet. Its window is ``[end of the pool's
previous window (or first_window_start), the reward's block time)`` — PPLNS since the previous
payout — and its work comes from the ``WorkSource`` (the stats API); a reward whose block time
is not after that start (blocks found in the same second) pays for the same work as the
previous payout and is split over the previous payout's window. A stale (orphaned) reward
is never split; an immature one waits; a failing stats API or chain API is retried next pass
(nothing is written until the split's single transaction).

``ChainRewardSource`` reads the chain API's upstream-compatible ``GET /v1/{az|btc}/blocks/
rewards`` (every coinbase output paying the node wallet is taken as a pool payout: the node
itself does not mine) and ``GET /v1/transactions/{txid}`` for the block time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from scnode_exchange.mining.service import MiningError, MiningService, PoolPayout

log = logging.getLogger(__name__)

WorkSource = Callable[[str, int, int], Awaitable[Mapping[str, float]]]


@dataclass(frozen=True, slots=True)
class Reward:
    """A reward paid to the node wallet (amount in base units; ``time`` = block time)."""

    payout_id: str
    amount: int
    confirmations: int
    coinbase: bool
    time: int
    stale: bool = False
    height: int = 0


class RewardSource(Protocol):
    async def rewards(self) -> Sequence[Reward]: ...


class ChainLike(Protocol):
    async def request(self, method: str, path: str) -> Any: ...

    async def transaction(self, txid: str) -> dict[str, Any]: ...


class ChainRewardSource:
    """Coinbase rewards of the node wallet from a chain API (``prefix``: ``az`` or ``btc``)."""

    def __init__(self, client: ChainLike, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._times: dict[str, int] = {}

    async def rewards(self) -> Sequence[Reward]:
        answer = await self.client.request("GET", f"/v1/{self.prefix}/blocks/rewards?limit=1000")
        per_tx: dict[str, dict[str, Any]] = {}
        for entry in answer.get("rewards", []):
            txid = str(entry["txid"])
            item = per_tx.setdefault(
                txid,
                {
                    "amount": 0,
                    "confirmations": int(entry.get("confirmations") or 0),
                    "stale": bool(entry.get("stale")),
                    "height": int(entry.get("blockheight") or 0),
                },
            )
            item["amount"] += int(entry["amount_sats"])
        out: list[Reward] = []
        for txid, item in per_tx.items():
            if item["stale"] or item["amount"] <= 0:
                continue
            when = self._times.get(txid)
            if when is None:
                when = int((await self.client.transaction(txid))["time"])
                self._times[txid] = when
            out.append(
                Reward(
                    txid, item["amount"], item["confirmations"], True, when, height=item["height"]
                )
            )
        return sorted(out, key=lambda r: (r.height, r.time, r.payout_id))  # block order


class PayoutWatcher:
    """Splits each mature reward of one pool once (see module)."""

    def __init__(
        self,
        service: MiningService,
        pool: str,
        rewards: RewardSource,
        work: WorkSource,
        *,
        first_window_start: int,
        interval: float = 30.0,
    ) -> None:
        self.service = service
        self.pool = pool
        self.rewards = rewards
        self.work = work
        self.first_window_start = first_window_start
        self.interval = interval

    async def poll_once(self) -> list[str]:
        """One pass; returns the payout ids split in it."""
        done: list[str] = []
        needed = self.service.config.confirmations[self.pool]
        for reward in await self.rewards.rewards():
            if reward.stale or self.service.find(self.pool, reward.payout_id) is not None:
                continue
            required = 100 if reward.coinbase else needed
            if reward.confirmations < required:
                break  # later rewards wait too: windows stay in block order
            last = self.service.last_window(self.pool)
            start, end = (self.first_window_start if last is None else last[1]), reward.time
            if end <= start:
                if last is None:
                    log.error(
                        "reward %s at %s is before first_window_start %s: left for the owner",
                        reward.payout_id,
                        reward.time,
                        start,
                    )
                    continue
                # found in the same second as the previous payout's block (or earlier): it
                # pays for the same work, so it is split over the same window
                start, end = last
            work = await self.work(self.pool, start, end)
            payout = PoolPayout(
                self.pool,
                reward.payout_id,
                reward.amount,
                reward.confirmations,
                reward.coinbase,
                start,
                end,
            )
            try:
                self.service.split(payout, work, actor="mining-watcher")
            except MiningError as exc:
                log.error("payout %s not split: %s", reward.payout_id, exc)
                continue
            done.append(reward.payout_id)
        return done

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                split = await self.poll_once()
                if split:
                    log.info("split %s payouts: %s", self.pool, ", ".join(split))
            except Exception:  # a chain/stats API outage: retry next pass
                log.exception("mining payout pass failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
