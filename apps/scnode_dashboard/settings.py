"""Settings of the member dashboard, from ``SCNODE_DASHBOARD_*`` variables or an env file."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scnode_core.keyfile import KeySource

KEY_FIELDS = ("exchange_api_key", "exchange_owner_api_key")


class DashboardSettings(BaseSettings):
    """Everything the dashboard needs; the apps role writes the env file (mode 0640)."""

    model_config = SettingsConfigDict(env_prefix="SCNODE_DASHBOARD_", extra="ignore")

    environment: Literal["production", "development", "test"] = "production"
    public_url: str = Field(
        description="URL members open (https://…/): redirect URI and Origin checks use it"
    )
    database_path: Path = Path("/var/lib/scnode-dashboard/dashboard.sqlite3")

    # the exchange, reached as a trusted client (a key with the 'dashboard' scope)
    exchange_url: str = "http://127.0.0.1:8410"
    exchange_api_key: SecretStr
    # or the file holding it (the apps role's way): read at start, then followed on every
    # request, so the key rotation needs no restart (see exchange_key)
    exchange_api_key_file: Path | None = None
    # the owner pages: a key with the 'owner' scope (empty: no owner pages), or its file, the
    # components file (JSON list the roles write: name, kind, url, key_file) and what the page
    # warns about
    exchange_owner_api_key: SecretStr = SecretStr("")
    exchange_owner_api_key_file: Path | None = None
    components_file: Path | None = None
    backup_dir: Path | None = None
    backup_max_age_hours: float = Field(default=36.0, gt=0)
    api_key_files: list[Path] = []
    api_key_max_age_days: float = Field(default=180.0, gt=0)
    deposit_chains: list[str] = ["bitcoin", "azcoin"]
    # the mining page: per pool (btc, azc) its stratum stats API {"url", "key" | "key_file"}
    # (a read key) and the host name members' miners connect to (empty: public_url's host)
    stratum_apis: dict[str, dict[str, str]] = {}
    stratum_host: str = ""
    asset_decimals: dict[str, int] = {"SATS": 0, "AZC": 8}

    # BTCofAZ OpenID Connect (empty discovery URL: local accounts only)
    oidc_discovery_url: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_scopes: str = "openid profile"
    oidc_provider_name: str = "BTCofAZ"

    # sessions and sign-in
    cookie_secure: bool = True
    session_idle_seconds: int = Field(default=15 * 60, ge=60)
    session_absolute_seconds: int = Field(default=12 * 3600, ge=300)
    reauth_seconds: int = Field(default=5 * 60, ge=30)
    max_failures: int = Field(default=5, ge=1, le=100, description="bad passwords/codes in a row")
    lockout_seconds: int = Field(default=15 * 60, ge=1)
    logins_per_minute: int = Field(default=20, ge=1)
    totp_issuer: str = "SC Node"

    @model_validator(mode="before")
    @classmethod
    def _key_files(cls, data: Any) -> Any:
        """A key given by its file only: read it now (a missing or empty file is an error)."""
        if not isinstance(data, dict):
            return data
        loaded = dict(data)
        for field in KEY_FIELDS:
            path = loaded.get(f"{field}_file")
            if path and not loaded.get(field):
                # KeyFileError (a ValueError naming the file, never a key) if missing or empty
                loaded[field] = KeySource.from_file(Path(path)).current()
        return loaded

    @model_validator(mode="after")
    def _consistent(self) -> DashboardSettings:
        url = urlsplit(self.public_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError("public_url must be an absolute http(s) URL")
        if self.environment == "production" and (not self.cookie_secure or url.scheme != "https"):
            raise ValueError("production needs https public_url and secure cookies")
        if self.oidc_discovery_url and not (
            self.oidc_client_id and self.oidc_client_secret.get_secret_value()
        ):
            raise ValueError("oidc_discovery_url needs oidc_client_id and oidc_client_secret")
        return self

    @cached_property
    def exchange_key(self) -> KeySource:
        """The ``dashboard`` key to send now: the file's, followed (re-read when the rotation
        rewrites it), or the fixed ``exchange_api_key``."""
        return self._key_source("exchange_api_key")

    @cached_property
    def exchange_owner_key(self) -> KeySource | None:
        """The ``owner`` key of the owner pages (None: not configured), followed like
        ``exchange_key``."""
        if not self.exchange_owner_api_key.get_secret_value():
            return None
        return self._key_source("exchange_owner_api_key")

    def _key_source(self, field: str) -> KeySource:
        key: str = getattr(self, field).get_secret_value()
        path: Path | None = getattr(self, f"{field}_file")
        return KeySource.from_file(path, initial=key) if path else KeySource.fixed(key)

    @property
    def origin(self) -> str:
        """scheme://host[:port] of ``public_url`` (what browsers send as ``Origin``)."""
        url = urlsplit(self.public_url)
        return f"{url.scheme}://{url.netloc}"

    def url(self, path: str) -> str:
        """An absolute URL of this dashboard."""
        return self.public_url.rstrip("/") + path
