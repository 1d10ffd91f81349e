"""Settings of the exchange, read from ``SCNODE_EXCHANGE_*`` variables or an env file.

Nested values (markets, chains) are JSON, e.g.
``SCNODE_EXCHANGE_MARKETS='[{"symbol": "AZC/SATS", "base": "AZC", "quote": "SATS", ...}]'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scnode_core.keyfile import KeySource
from scnode_exchange.ledger import AssetSpec
from scnode_exchange.matching import MarketSpec


class MarketSettings(BaseModel):
    """One market (see the README's units: quantity in lots, price in sats per lot)."""

    symbol: str = Field(pattern=r"^[A-Z0-9]{2,12}/[A-Z0-9]{2,12}$")
    base: str
    quote: str
    lot_size: int = Field(gt=0)
    tick: int = Field(gt=0)
    maker_fee_bps: int = Field(default=0, ge=0, le=10_000)
    taker_fee_bps: int = Field(default=0, ge=0, le=10_000)
    max_quantity: int = Field(default=10**9, gt=0)
    max_price: int = Field(default=10**9, gt=0)

    def spec(self) -> MarketSpec:
        """The matching engine's view of this market."""
        return MarketSpec(
            self.symbol,
            self.base,
            self.quote,
            self.lot_size,
            self.tick,
            self.maker_fee_bps,
            self.taker_fee_bps,
            self.max_quantity,
            self.max_price,
        )


class AssetSettings(BaseModel):
    """An extra asset (the microcurrency); SATS and AZC are built in."""

    code: str = Field(pattern=r"^[A-Z0-9]{2,12}$")
    name: str
    decimals: int = Field(ge=0, le=18)
    unit: str

    def spec(self) -> AssetSpec:
        """The ledger's view of this asset."""
        return AssetSpec(self.code, self.name, self.decimals, self.unit)


def load_key_files(data: Any, *fields: str) -> Any:
    """For each ``field`` not given but ``<field>_file`` given, read the key from that file.

    The apps role keeps the API keys the exchange uses as clients in files of their own (0640,
    the exchange's group): the key rotation rewrites a file, never the settings around it. The
    key read here checks the file at start; the clients then follow the file (`client_key`)."""
    if not isinstance(data, dict):
        return data
    loaded = dict(data)
    for field in fields:
        path = loaded.get(f"{field}_file")
        if loaded.get(field) is None and path:
            try:
                key = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"{field}_file {path}: {exc.strerror}") from None
            if not key:
                raise ValueError(f"{field}_file {path} is empty")
            loaded[field] = key
    return loaded


def client_key(settings: Any, field: str = "api_key") -> KeySource:
    """The key a client built from ``settings`` presents: when ``<field>_file`` is configured,
    the file's key re-read whenever the rotation rewrites it (the key read at start is kept
    while the file cannot be read); otherwise the fixed ``<field>``."""
    key = getattr(settings, field).get_secret_value()
    path = getattr(settings, f"{field}_file", None)
    return KeySource.from_file(Path(path), initial=key) if path else KeySource.fixed(key)


class ChainSettings(BaseModel):
    """How the exchange reaches one chain API (deposits, withdrawals)."""

    asset: str = Field(description="ledger asset credited for this chain: SATS, AZC, …")
    api_url: str
    api_key: SecretStr
    # or the file holding it (read at start, then followed: see client_key)
    api_key_file: Path | None = None
    confirmations: int = Field(default=6, ge=1, le=1000)

    @model_validator(mode="before")
    @classmethod
    def _key_file(cls, data: Any) -> Any:
        return load_key_files(data, "api_key")


class LightningSettings(BaseModel):
    """How the exchange reaches the node's Lightning API (LaaS deposits by invoice)."""

    api_url: str
    api_key: SecretStr  # a key with the `invoice` scope
    # or the file holding it (read at start, then followed: see client_key)
    api_key_file: Path | None = None
    invoice_expiry_seconds: int = Field(default=3600, ge=60, le=7 * 86400)
    max_invoice_sats: int = Field(default=10_000_000, ge=1, le=2_100_000_000_000_000)
    # members paying invoices (scnode_exchange.lightning.payments; the key needs `pay` too):
    # per-payment and rolling 24-hour limits per member (sats, fees not counted), and the
    # routing fee reserved up front: max(fee_floor_sats, amount x fee_ppm / 10^6), rounded up
    pay_min_sats: int = Field(default=1, ge=1)
    pay_max_sats: int = Field(default=1_000_000, ge=1, le=2_100_000_000_000_000)
    pay_daily_limit_sats: int | None = Field(default=5_000_000, ge=1)
    pay_fee_floor_sats: int = Field(default=10, ge=0, le=1_000_000)
    pay_fee_ppm: int = Field(default=5_000, ge=0, le=1_000_000)
    pay_poll_seconds: float = Field(default=2.0, gt=0, le=600)
    # Lightning API idempotency keys are <prefix>-<payment id>; change it if the exchange
    # database is ever rebuilt from scratch, so new ids never meet keys the API remembers
    pay_key_prefix: str = Field(default="lnpay", pattern=r"^[A-Za-z0-9_.:]{1,40}$")
    # test-only: the payment worker SIGKILLs itself at this step (fault tests)
    pay_crash_at: Literal["after_mark_sending", "after_send"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _key_file(cls, data: Any) -> Any:
        return load_key_files(data, "api_key")


DEFAULT_MARKETS = [
    # 1 lot = 0.01 AZC, prices in sats per lot, 10-sat ticks
    MarketSettings(symbol="AZC/SATS", base="AZC", quote="SATS", lot_size=1_000_000, tick=10)
]


class ExchangeSettings(BaseSettings):
    """Everything the exchange app needs; the apps role writes the env file (mode 0640)."""

    # the deposit and withdrawal workers read their own settings from the same variables
    model_config = SettingsConfigDict(env_prefix="SCNODE_EXCHANGE_", extra="ignore")

    database_url: str = "sqlite:////var/lib/scnode-exchange/exchange.sqlite3"
    markets: list[MarketSettings] = Field(default_factory=lambda: list(DEFAULT_MARKETS))
    extra_assets: list[AssetSettings] = Field(default_factory=list)
    chains: dict[str, ChainSettings] = Field(default_factory=dict)
    # member sessions: HMAC key file (32+ random bytes, generated on the node's first run)
    session_secret_file: Path
    session_ttl_seconds: int = Field(default=12 * 3600, ge=60, le=30 * 86400)
    cookie_secure: bool = True
    # owner API keys (scnode_core.apikeys file with the "owner" scope)
    owner_api_keys_file: Path
    # member limits enforced by the API
    max_open_orders_per_member: int = Field(default=200, ge=1)
    # per member: order placements/cancels per second and burst; lab logins per client
    orders_per_second: float = Field(default=50.0, gt=0)
    orders_burst: int = Field(default=200, ge=1)
    logins_per_minute: int = Field(default=10, ge=1)
    # members' requests that move money (withdrawals, Lightning invoices, deposit addresses):
    # per member, this many a minute with bursts as large (DESIGN §5)
    money_requests_per_minute: int = Field(default=30, ge=1)
    page_size_max: int = Field(default=500, ge=10, le=10_000)
    # owner approval needed for withdrawals above this many base units (withdrawals package)
    withdrawal_approval_threshold: int = Field(default=1_000_000, ge=0)
    # per-chain withdrawal policy (JSON, see scnode_exchange.withdrawals.settings)
    withdrawals: dict[str, dict[str, Any]] = Field(default_factory=dict)
    withdrawal_poll_seconds: float = Field(default=2.0, gt=0, le=600)
    # the same three as the stand-alone worker (python -m scnode_exchange.withdrawals) reads, so
    # the worker inside the app and the one alone behave alike from one env file
    withdrawal_batch: int = Field(default=50, ge=1, le=10_000)
    withdrawal_follow_seconds: float = Field(default=10.0, ge=0, le=3600)
    withdrawal_key_prefix: str = Field(default="wd", pattern=r"^[A-Za-z0-9_.:]{1,40}$")
    # mining payout split per pool (btc, azc): chain/stats API URLs and keys, fee, window start
    # (JSON, see scnode_exchange.mining.settings.PoolSettings); none configured = no watcher
    mining_pools: dict[str, dict[str, Any]] = Field(default_factory=dict)
    mining_interval: float = Field(default=30.0, gt=0, le=3600)
    market_stats_interval_seconds: float = Field(default=2.0, gt=0)
    # solvency check (holdings vs member liabilities, scnode_exchange.solvency): seconds between
    # checks (0 = no periodic check), and how many checks in a row must see a shortfall
    # before the alert is raised (bridges the moment between a wallet change and its booking)
    solvency_interval_seconds: float = Field(default=60.0, ge=0, le=86_400)
    solvency_confirm_checks: int = Field(default=2, ge=1, le=100)
    # Lightning deposits (scnode_exchange.lightning; JSON): none = the routes answer 503
    lightning: LightningSettings | None = None
    # lab only: a password-less dev login by handle; never on a real node
    lab_mode: bool = False
    environment: Literal["production", "development", "test"] = "production"

    @model_validator(mode="after")
    def _consistent(self) -> ExchangeSettings:
        symbols = [m.symbol for m in self.markets]
        if len(set(symbols)) != len(symbols):
            raise ValueError("market symbols must be unique")
        if self.lab_mode and self.environment == "production":
            raise ValueError("lab_mode (password-less dev login) is refused in production")
        return self

    def market_specs(self) -> list[MarketSpec]:
        """The engine specs of every configured market."""
        return [m.spec() for m in self.markets]

    def read_session_secret(self) -> bytes:
        """The HMAC key of member sessions; refuses a short or missing one."""
        secret = self.session_secret_file.read_bytes().strip()
        if len(secret) < 32:
            raise ValueError(f"{self.session_secret_file} holds fewer than 32 bytes")
        return secret
