"""Settings of the deposit watcher when it runs alone (``python -m scnode_exchange.deposits``).

Read from the same ``SCNODE_EXCHANGE_*`` variables / env file as the exchange app (names it
does not use are ignored), so one env file serves both:

* ``SCNODE_EXCHANGE_DATABASE_URL`` — the exchange database;
* ``SCNODE_EXCHANGE_CHAINS`` — JSON ``{"bitcoin": {"api_url": "http://127.0.0.1:8401",
  "api_key": "...", "confirmations": 3}, "azcoin": {..., "confirmations": 6}}``; ``asset``
  defaults to SATS for bitcoin and AZC for azcoin (a microcurrency names its code);
* ``SCNODE_EXCHANGE_DEPOSIT_BATCH_SIZE``, ``SCNODE_EXCHANGE_DEPOSIT_REFRESH_BELOW``,
  ``SCNODE_EXCHANGE_DEPOSIT_METRICS_PORT`` (Prometheus ``/metrics`` on 127.0.0.1 when set).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.chainclient import ChainApiClient
from scnode_exchange.deposits.service import ChainDepositConfig, DepositService, chain_asset
from scnode_exchange.deposits.watcher import DepositMetrics, DepositWatcher
from scnode_exchange.settings import client_key, load_key_files


class DepositChainSettings(BaseModel):
    """One chain API the watcher follows (the same fields as the app's chain settings)."""

    asset: str | None = None
    api_url: str
    api_key: SecretStr
    api_key_file: Path | None = None
    confirmations: int = Field(default=6, ge=1, le=1000)

    @model_validator(mode="before")
    @classmethod
    def _key_file(cls, data: Any) -> Any:
        return load_key_files(data, "api_key")


class DepositSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCNODE_EXCHANGE_", extra="ignore")

    database_url: str = "sqlite:////var/lib/scnode-exchange/exchange.sqlite3"
    chains: dict[str, DepositChainSettings] = Field(default_factory=dict)
    deposit_batch_size: int = Field(default=500, ge=1, le=10_000)
    deposit_refresh_below: int = Field(default=100, ge=1, le=10_000)
    deposit_metrics_port: int | None = Field(default=None, ge=1, le=65535)


class ChainSettingsLike(Protocol):
    """What the watcher needs of a chain's settings (the app's ``ChainSettings`` fits)."""

    @property
    def asset(self) -> str | None: ...
    @property
    def api_url(self) -> str: ...
    @property
    def api_key(self) -> SecretStr: ...
    @property
    def confirmations(self) -> int: ...


def build_deposits(
    sessions: sessionmaker[Session],
    chains: Mapping[str, ChainSettingsLike],
    *,
    batch_size: int = 500,
    refresh_below: int = 100,
    metrics: DepositMetrics | None = None,
) -> tuple[DepositService, DepositWatcher, dict[str, ChainApiClient]]:
    """The service, the watcher and its chain API clients (close them after ``run``)."""
    configs = {
        name: ChainDepositConfig(chain_asset(name, c.asset), c.confirmations)
        for name, c in chains.items()
    }
    service = DepositService(sessions, configs)
    clients = {name: ChainApiClient(c.api_url, client_key(c)) for name, c in chains.items()}
    watcher = DepositWatcher(
        service, clients, batch_size=batch_size, refresh_below=refresh_below, metrics=metrics
    )
    return service, watcher, clients
