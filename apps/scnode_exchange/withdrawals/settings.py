"""Withdrawal policy per chain and the worker's settings (``SCNODE_EXCHANGE_*``).

The worker reads the same variables as the exchange app where they overlap
(``SCNODE_EXCHANGE_DATABASE_URL``, ``SCNODE_EXCHANGE_CHAINS`` with ``asset``, ``api_url``,
``api_key``, ``withdrawal_approval_threshold``) and its own policy from
``SCNODE_EXCHANGE_WITHDRAWALS`` (JSON, one object per chain), e.g.::

    SCNODE_EXCHANGE_WITHDRAWALS='{"bitcoin": {"hrp": "bc", "min_amount": 1000,
        "max_amount": 5000000, "daily_limit": 10000000, "fee": 500, "fee_rate_sat_vb": 2}}'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scnode_exchange.settings import load_key_files

# The chain names of an SC Node and the human-readable part of their mainnet addresses.
DEFAULT_HRP = {"bitcoin": "bc", "azcoin": "az"}
DEFAULT_ASSET = {"bitcoin": "SATS", "azcoin": "AZC"}


class WithdrawalPolicy(BaseModel):
    """Limits and fee of one chain's withdrawals; amounts in the asset's base units.

    Fee: the member pays ``amount + fee`` where ``fee = flat_fee + fee_rate_sat_vb *
    tx_vsize``. When ``fee_rate_sat_vb`` is set the worker also asks the wallet to pay exactly
    that rate, so the member's fee covers a typical one-input two-output transaction
    (``tx_vsize`` = 141 vB for P2WPKH); the fee goes to the ``fees`` account and the network
    fee the wallet really paid is booked from ``fees`` to ``node_wallet`` at confirmation.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    asset: str = Field(pattern=r"^[A-Z0-9]{2,16}$")
    hrp: str = Field(
        pattern=r"^[a-z0-9]{1,20}$", description="bech32 address prefix: bc, bcrt, az…"
    )
    min_amount: int = Field(default=546, ge=1, description="below this a payment is dust")
    max_amount: int | None = Field(default=None, ge=1, description="per withdrawal")
    daily_limit: int | None = Field(
        default=None, ge=1, description="per member, sum of amounts over the last 24 hours"
    )
    approval_threshold: int | None = Field(
        default=None, ge=0, description="amounts above this wait for the owner's approval"
    )
    flat_fee: int = Field(default=0, ge=0)
    fee_rate_sat_vb: int | None = Field(default=None, ge=1, le=10_000)
    tx_vsize: int = Field(default=141, ge=1)
    confirmations: int = Field(default=3, ge=1, le=1000)

    @property
    def fee(self) -> int:
        """The withdrawal fee the member pays on top of the amount."""
        return self.flat_fee + (self.fee_rate_sat_vb or 0) * self.tx_vsize


class ChainEndpoint(BaseModel):
    """The part of the exchange's per-chain settings the worker uses."""

    model_config = ConfigDict(extra="ignore")

    asset: str
    api_url: str
    api_key: SecretStr
    api_key_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _key_file(cls, data: Any) -> Any:
        return load_key_files(data, "api_key")


class WithdrawalPolicyInput(BaseModel):
    """A policy as configured: ``asset`` and ``hrp`` may be left to the chain's defaults."""

    model_config = ConfigDict(extra="forbid")

    asset: str | None = None
    hrp: str | None = None
    min_amount: int = 546
    max_amount: int | None = None
    daily_limit: int | None = None
    approval_threshold: int | None = None
    flat_fee: int = 0
    fee_rate_sat_vb: int | None = None
    tx_vsize: int = 141
    confirmations: int = 3


class WithdrawalSettings(BaseSettings):
    """What ``python -m scnode_exchange.withdrawals`` needs."""

    model_config = SettingsConfigDict(env_prefix="SCNODE_EXCHANGE_", extra="ignore")

    database_url: str = "sqlite:////var/lib/scnode-exchange/exchange.sqlite3"
    chains: dict[str, ChainEndpoint] = Field(default_factory=dict)
    withdrawals: dict[str, WithdrawalPolicyInput] = Field(default_factory=dict)
    withdrawal_approval_threshold: int = Field(default=1_000_000, ge=0)
    withdrawal_poll_seconds: float = Field(default=2.0, gt=0, le=600)
    withdrawal_batch: int = Field(default=50, ge=1, le=10_000)
    withdrawal_follow_seconds: float = Field(default=10.0, ge=0, le=3600)
    # chain API idempotency keys are <prefix>-<id>; change it if the database is ever rebuilt
    withdrawal_key_prefix: str = Field(default="wd", pattern=r"^[A-Za-z0-9_.:]{1,40}$")
    # test-only: the worker SIGKILLs itself at this step (after_mark_sending|after_send|
    # after_commit) so fault tests can crash it exactly there
    crash_at: Literal["after_mark_sending", "after_send", "after_commit"] | None = None

    def policies(self) -> dict[str, WithdrawalPolicy]:
        """The effective policy of every chain that has a chain API configured."""
        return build_policies(
            {name: c.asset for name, c in self.chains.items()},
            {name: p.model_dump() for name, p in self.withdrawals.items()},
            self.withdrawal_approval_threshold,
        )


def build_policies(
    chain_assets: dict[str, str], configured: dict[str, dict[str, Any]], default_threshold: int
) -> dict[str, WithdrawalPolicy]:
    """Merge each chain's asset, the configured policy and the defaults."""
    unknown = set(configured) - set(chain_assets)
    if unknown:
        raise ValueError(f"withdrawal policy for chains without a chain API: {sorted(unknown)}")
    policies = {}
    for chain, asset in chain_assets.items():
        given = {k: v for k, v in configured.get(chain, {}).items() if v is not None}
        given.setdefault("asset", asset)
        given.setdefault("hrp", DEFAULT_HRP.get(chain, chain[:4]))
        given.setdefault("approval_threshold", default_threshold)
        policies[chain] = WithdrawalPolicy(**given)
    return policies
