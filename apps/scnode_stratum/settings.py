"""Settings of one stratum stats API instance, read from ``SCNODE_STRATUM_API_*`` or an env file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StratumApiSettings(BaseSettings):
    """One instance per translator (btc, azc); the apps role writes the env file."""

    model_config = SettingsConfigDict(env_prefix="SCNODE_STRATUM_API_", extra="forbid")

    name: str = Field(default="btc", pattern=r"^[a-z][a-z0-9]{1,15}$", description="instance")
    log_file: Path = Field(description="the translator's log file, e.g. /var/log/stratum/…")
    state_db: Path = Field(description="this instance's SQLite file")
    api_keys_file: Path
    # Worker name → member key: the part before the first separator (alice.rig1 → alice).
    member_separator: str = Field(default=".", min_length=1, max_length=1)
    poll_interval: float = Field(default=0.1, gt=0, le=5)
    raw_retention_seconds: int = Field(default=7200, ge=3600)
    compact_interval_seconds: float = Field(default=60.0, gt=0)
    # Simulated hashes per real hash (simnet's SIMNET_WORK_SCALE); 1 for a real translator.
    work_scale: float = Field(default=1.0, gt=0)
    # sv2-apps translator monitoring API (127.0.0.1:9093 / :9096 upstream); cross-checks which
    # worker each channel belongs to. Off when unset (v1.5.0 has no monitoring API).
    monitoring_url: str | None = Field(default=None, pattern=r"^https?://")
    monitoring_interval: float = Field(default=5.0, gt=0)
    environment: Literal["production", "development", "test"] = "production"
