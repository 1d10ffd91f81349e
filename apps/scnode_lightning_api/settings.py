"""Settings of the Lightning API, read from ``SCNODE_LIGHTNING_API_*`` or an env file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
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
