"""Settings of the Lightning API, read from ``SCNODE_LIGHTNING_API_*`` or an env file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ZMQ_TOPICS = (
    "channel_opened",
    "connect",
    "disconnect",
    "invoice_payment",
    "warning",
    "forward_event",
    "sendpay_success",
    "sendpay_failure",
)


class LightningApiSettings(BaseSettings):
    """Everything the API needs; the env file is written by the apps role (mode 0640)."""

    model_config = SettingsConfigDict(env_prefix="SCNODE_LIGHTNING_API_", extra="forbid")

    rpc_socket: Path = Field(description="lightningd's <lightning-dir>/<network>/lightning-rpc")
    rpc_timeout: float = Field(default=120.0, gt=0)
    # cl-zmq endpoints (the lightning role's zmq-pub-* values); several topics may share one.
    # Each message only wakes the reconciler: lightningd's lists are the truth (cl-zmq has no
    # sequence numbers, so a lost message is never noticed otherwise).
    zmq_endpoints: list[str] = Field(default_factory=list)
    # bitcoind, for "synced to chain" (lightningd's blockheight against the chain tip).
    bitcoin_rpc_url: str | None = None
    bitcoin_rpc_user: str | None = None
    bitcoin_rpc_password: SecretStr | None = None
    # The SC Cluster's node: health reports the channel with it (else the largest channel).
    cluster_peer_id: str | None = None
    api_keys_file: Path
    state_db: Path
    # Pay with xpay (CLN v26's default) or the legacy pay plugin.
    pay_command: Literal["xpay", "pay"] = "xpay"
    # Fee limit when a pay request names none: base + proportional, in msat / ppm.
    default_max_fee_base_msat: int = Field(default=1_000, ge=0)
    default_max_fee_ppm: int = Field(default=5_000, ge=0, le=1_000_000)
    # A payment record whose pay call died with this API and that lightningd never started
    # (no sendpay) is declared failed after this long; lightningd refuses to pay the same
    # invoice twice anyway.
    unsent_grace_seconds: float = Field(default=60.0, ge=1)
    # How often lightningd's lists are read when no cl-zmq message woke the reconciler.
    poll_seconds: float = Field(default=5.0, gt=0, le=300)
    # Blocks lightningd may trail bitcoind and still count as synced.
    sync_tolerance_blocks: int = Field(default=2, ge=0)
    event_retention: int = Field(default=100_000, ge=1000)
    environment: Literal["production", "development", "test"] = "production"

    # -- auto-balancing with the SC Cluster (README "Auto-balancing"); off unless enabled ------
    rebalance_enabled: bool = False
    # The cluster's rebalance endpoint, reached over the WireGuard tunnel.
    rebalance_cluster_url: str | None = None
    rebalance_cluster_token: SecretStr | None = None
    # Target band of the local balance, as fractions of the channel's capacity.
    rebalance_low: float = Field(default=0.3, gt=0, lt=1)
    rebalance_high: float = Field(default=0.7, gt=0, lt=1)
    rebalance_interval_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Pause after a swap finished (or was given up) before the next one may start.
    rebalance_cooldown_seconds: float = Field(default=900.0, ge=0)
    rebalance_min_swap_sat: int = Field(default=10_000, gt=0)
    # One swap is at most this much (one HTLC: below the channel's htlc_maximum_msat); a
    # larger gap closes over several swaps, one per cool-down.
    rebalance_max_swap_sat: int = Field(default=500_000, gt=0)
    # Per UTC day: sats moved (both directions) and fees paid (cluster fee, routing, miner).
    rebalance_daily_max_sat: int = Field(default=1_000_000, gt=0)
    rebalance_daily_max_fee_sat: int = Field(default=10_000, gt=0)
    # ALERT when the balance stays outside the band this long.
    rebalance_alert_outside_band_seconds: float = Field(default=3600.0, gt=0)
    # ALERT when a swap has not finished after this long.
    rebalance_swap_timeout_seconds: float = Field(default=3600.0, gt=0)
    rebalance_http_timeout_seconds: float = Field(default=30.0, gt=0, le=300)

    @model_validator(mode="after")
    def _rebalance_consistent(self) -> LightningApiSettings:
        if not self.rebalance_enabled:
            return self
        missing = [
            f"SCNODE_LIGHTNING_API_{name.upper()}"
            for name in ("rebalance_cluster_url", "cluster_peer_id")
            if not getattr(self, name)
        ]
        if missing:
            raise ValueError(f"rebalance_enabled needs {' and '.join(missing)}")
        url = str(self.rebalance_cluster_url)
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"rebalance_cluster_url {url!r} must start with http:// or https://")
        if not self.rebalance_low < self.rebalance_high:
            raise ValueError(
                f"rebalance_low ({self.rebalance_low}) must be below rebalance_high "
                f"({self.rebalance_high})"
            )
        if self.rebalance_min_swap_sat > self.rebalance_daily_max_sat:
            raise ValueError("rebalance_min_swap_sat is above rebalance_daily_max_sat")
        if self.rebalance_min_swap_sat > self.rebalance_max_swap_sat:
            raise ValueError("rebalance_min_swap_sat is above rebalance_max_swap_sat")
        return self

    @field_validator("zmq_endpoints")
    @classmethod
    def _endpoints(cls, value: list[str]) -> list[str]:
        for endpoint in value:
            if not endpoint.startswith(("tcp://", "ipc://")):
                raise ValueError(f"zmq endpoint {endpoint!r} must start with tcp:// or ipc://")
        return value

    @field_validator("bitcoin_rpc_password")
    @classmethod
    def _no_placeholder_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value() in {"", "changeme", "password"}:
            raise ValueError("bitcoin_rpc_password is empty or a placeholder")
        return value
