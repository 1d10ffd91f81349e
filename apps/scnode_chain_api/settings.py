"""Settings of one chain API instance, read from ``SCNODE_CHAIN_API_*`` or an env file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Upstream master-api serves /v1/az/... and /v1/btc/...; a microcurrency gets its own prefix.
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{1,15}$")


class ChainApiSettings(BaseSettings):
    """Everything one instance needs; the env file is written by the apps role (mode 0640)."""

    model_config = SettingsConfigDict(env_prefix="SCNODE_CHAIN_API_", extra="forbid")

    chain: str = Field(description="chain name: bitcoin, azcoin or a microcurrency")
    path_prefix: str = Field(description="upstream-compatible path segment: btc, az, …")
    rpc_url: str = "http://127.0.0.1:8332"
    rpc_user: str = "satoshi"
    rpc_password: SecretStr
    rpc_timeout: float = 30.0
    wallet: str = "wallet"
    zmq_rawtx: str | None = None
    zmq_hashblock: str | None = None
    zmq_sequence: str | None = None
    api_keys_file: Path
    state_db: Path
    # Confirmations after which a deposit counts as final for this chain (the exchange may ask
    # for its own N; events keep flowing until this depth so reorgs are still seen).
    track_confirmations: int = Field(default=100, ge=1, le=1000)
    event_retention: int = Field(default=100_000, ge=1000)
    # Longest a deposit address's received amounts or the wallet balance are served from
    # memory. The watcher's ZMQ-driven change marks end an entry as soon as something may have
    # changed (a tx, a block, a mempool removal, a ZMQ gap, our own send); this lifetime only
    # bounds staleness should ZMQ messages be lost unnoticed. 0 = never cache.
    address_cache_seconds: float = Field(default=10.0, ge=0, le=60)
    environment: Literal["production", "development", "test"] = "production"

    @field_validator("path_prefix")
    @classmethod
    def _prefix_is_a_path_segment(cls, value: str) -> str:
        if not _PREFIX_RE.match(value):
            raise ValueError("path_prefix must be 2-16 lowercase letters/digits, e.g. btc or az")
        return value

    @field_validator("rpc_password")
    @classmethod
    def _no_placeholder_password(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() in {"", "changeme", "password"}:
            raise ValueError("rpc_password is empty or a placeholder")
        return value
