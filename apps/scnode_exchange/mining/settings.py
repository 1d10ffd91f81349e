"""Settings of the payout watcher (``python -m scnode_exchange.mining``, or the exchange app's
lifespan through ``build_worker``).

Read from the same ``SCNODE_EXCHANGE_*`` variables / env file as the exchange app:

* ``SCNODE_EXCHANGE_DATABASE_URL`` — the exchange database;
* ``SCNODE_EXCHANGE_MINING_POOLS`` — JSON ``{"azc": {"chain_api_url": "http://127.0.0.1:8402",
  "chain_api_key": "...", "stats_api_url": "http://127.0.0.1:8096", "stats_api_key": "...",
  "fee_bps": 250, "confirmations": 6, "first_window_start": 1764115200}, "btc": {...}}``
  (``chain_prefix`` defaults to ``az``/``btc``; ``first_window_start`` = Unix seconds where the
  first payout's window starts, e.g. when the node joined the pool; instead of a key,
  ``chain_api_key_file`` / ``stats_api_key_file`` name a file holding it);
* ``SCNODE_EXCHANGE_MINING_INTERVAL`` — seconds between passes (default 30).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.chainclient import ChainApiClient
from scnode_exchange.mining.service import MiningConfig, MiningService
from scnode_exchange.mining.statsclient import StatsWorkSource, StratumWorkClient
from scnode_exchange.mining.watcher import ChainRewardSource, PayoutWatcher
from scnode_exchange.settings import client_key, load_key_files

PREFIX = {"azc": "az", "btc": "btc"}


class PoolSettings(BaseModel):
    chain_api_url: str
    chain_api_key: SecretStr
    chain_prefix: str | None = Field(default=None, pattern="^(az|btc)$")
    stats_api_url: str
    stats_api_key: SecretStr
    # the keys may instead be read from files (the apps role writes them 0640; followed)
    chain_api_key_file: Path | None = None
    stats_api_key_file: Path | None = None
    fee_bps: int = Field(default=0, ge=0, le=10_000)
    confirmations: int = Field(default=6, ge=1, le=1000)
    first_window_start: int = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _key_files(cls, data: Any) -> Any:
        return load_key_files(data, "chain_api_key", "stats_api_key")


class MiningSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCNODE_EXCHANGE_", extra="ignore")

    database_url: str = "sqlite:////var/lib/scnode-exchange/exchange.sqlite3"
    mining_pools: dict[str, PoolSettings] = Field(default_factory=dict)
    mining_interval: float = Field(default=30.0, gt=0, le=3600)


def mining_config(pools: dict[str, PoolSettings]) -> MiningConfig:
    """Fee and confirmations per pool (pools not configured: 0 bps, 6 confirmations)."""
    return MiningConfig(
        fee_bps={p: pools[p].fee_bps if p in pools else 0 for p in PREFIX},
        confirmations={p: pools[p].confirmations if p in pools else 6 for p in PREFIX},
    )


class PayoutWorkers:
    """One PayoutWatcher per configured pool, with their clients closed when ``run`` ends."""

    def __init__(self, settings: MiningSettings, sessions: sessionmaker[Session]) -> None:
        unknown = set(settings.mining_pools) - set(PREFIX)
        if unknown:
            raise ValueError(f"unknown mining pools {sorted(unknown)} (btc, azc)")
        self.service = MiningService(sessions, mining_config(settings.mining_pools))
        self.closers: list[Any] = []
        self.watchers: list[PayoutWatcher] = []
        # the owner's payout route asks the same stats APIs when a request carries no work
        self.work_source = StatsWorkSource({})
        for pool, conf in sorted(settings.mining_pools.items()):
            chain = ChainApiClient(conf.chain_api_url, client_key(conf, "chain_api_key"))
            stats = StratumWorkClient(conf.stats_api_url, client_key(conf, "stats_api_key"))
            self.closers += [chain, stats]
            self.work_source.clients[pool] = stats

            async def work(p: str, start: int, end: int, s: StratumWorkClient = stats) -> Any:
                return await s.work(start, end)

            self.watchers.append(
                PayoutWatcher(
                    self.service,
                    pool,
                    ChainRewardSource(chain, conf.chain_prefix or PREFIX[pool]),
                    work,
                    first_window_start=conf.first_window_start,
                    interval=settings.mining_interval,
                )
            )

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await asyncio.gather(*(w.run(stop) for w in self.watchers))
        finally:
            for closer in self.closers:
                await closer.aclose()


def mining_settings(settings: Any = None) -> MiningSettings:
    """``settings`` if it carries the mining fields (``mining_pools``), else the mining settings
    read from the environment (``SCNODE_EXCHANGE_MINING_*``, as the exchange unit sets them)."""
    if isinstance(settings, MiningSettings):
        return settings
    if settings is not None and hasattr(settings, "mining_pools"):
        return MiningSettings(
            database_url=getattr(settings, "database_url", MiningSettings().database_url),
            mining_pools=settings.mining_pools,
            mining_interval=getattr(settings, "mining_interval", 30.0),
        )
    return MiningSettings()


def build_worker(settings: Any, sessions: sessionmaker[Session]) -> PayoutWorkers | None:
    """What the exchange app may run in its lifespan (None when no pool is configured)."""
    resolved = mining_settings(settings)
    if not resolved.mining_pools:
        return None
    return PayoutWorkers(resolved, sessions)
