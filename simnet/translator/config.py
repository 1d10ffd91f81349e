"""`translator_sv2` configuration (TOML), as the pinned `sv2-apps` release reads it.

Accepted shape (sv2-apps 2026): `[[upstreams]]` each with `address`, `port`,
`authority_pubkey`, `user_identity`; top-level `downstream_address`, `downstream_port`,
`downstream_extranonce2_size`, `aggregate_channels`, optional `log_file`,
`monitoring_address`; `[downstream_difficulty_config]` with `min_individual_miner_hashrate`,
`shares_per_minute`, `enable_vardiff`, `job_keepalive_interval_secs`. A top-level
`user_identity` (the v1.4-v1.5 generation) is honoured when an upstream has none.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KNOWN_TOP = {
    "upstreams",
    "downstream_address",
    "downstream_port",
    "downstream_extranonce2_size",
    "aggregate_channels",
    "downstream_difficulty_config",
    "log_file",
    "monitoring_address",
    "monitoring_cache_refresh_secs",
    "user_identity",
    "max_supported_version",
    "min_supported_version",
    "supported_extensions",
    "required_extensions",
}
KNOWN_UPSTREAM = {"address", "port", "authority_pubkey", "user_identity"}
KNOWN_DIFFICULTY = {
    "min_individual_miner_hashrate",
    "shares_per_minute",
    "enable_vardiff",
    "job_keepalive_interval_secs",
}


class ConfigError(ValueError):
    """The configuration cannot be used (the real binary exits on these too)."""


@dataclass
class Upstream:
    address: str
    port: int
    authority_pubkey: str
    user_identity: str


@dataclass
class TranslatorConfig:
    upstreams: list[Upstream]
    downstream_address: str
    downstream_port: int
    downstream_extranonce2_size: int = 4
    aggregate_channels: bool = False
    min_individual_miner_hashrate: float = 100e9
    shares_per_minute: float = 6.0
    enable_vardiff: bool = True
    job_keepalive_interval_secs: int = 60
    log_file: str | None = None
    monitoring_address: str | None = None
    unknown_keys: list[str] = field(default_factory=list)

    @property
    def user_identity(self) -> str:
        return self.upstreams[0].user_identity


def _require(table: dict[str, Any], key: str, where: str) -> Any:
    if key not in table:
        raise ConfigError(f"missing field `{key}` in {where}")
    return table[key]


def parse_config(text: str) -> TranslatorConfig:
    """Parse a config file's text; unknown keys are collected, not fatal."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from exc
    unknown = [k for k in data if k not in KNOWN_TOP]
    top_identity = data.get("user_identity")
    upstreams: list[Upstream] = []
    for i, up in enumerate(_require(data, "upstreams", "config")):
        unknown += [f"upstreams[{i}].{k}" for k in up if k not in KNOWN_UPSTREAM]
        identity = up.get("user_identity", top_identity)
        if identity is None:
            raise ConfigError(f"missing field `user_identity` in upstreams[{i}]")
        upstreams.append(
            Upstream(
                address=str(_require(up, "address", f"upstreams[{i}]")),
                port=int(_require(up, "port", f"upstreams[{i}]")),
                authority_pubkey=str(up.get("authority_pubkey", "")),
                user_identity=str(identity),
            )
        )
    if not upstreams:
        raise ConfigError("no upstreams configured")
    diff = data.get("downstream_difficulty_config", {})
    unknown += [f"downstream_difficulty_config.{k}" for k in diff if k not in KNOWN_DIFFICULTY]
    return TranslatorConfig(
        upstreams=upstreams,
        downstream_address=str(_require(data, "downstream_address", "config")),
        downstream_port=int(_require(data, "downstream_port", "config")),
        downstream_extranonce2_size=int(data.get("downstream_extranonce2_size", 4)),
        aggregate_channels=bool(data.get("aggregate_channels", False)),
        min_individual_miner_hashrate=float(diff.get("min_individual_miner_hashrate", 100e9)),
        shares_per_minute=float(diff.get("shares_per_minute", 6.0)),
        enable_vardiff=bool(diff.get("enable_vardiff", True)),
        job_keepalive_interval_secs=int(diff.get("job_keepalive_interval_secs", 60)),
        log_file=data.get("log_file"),
        monitoring_address=data.get("monitoring_address"),
        unknown_keys=unknown,
    )


def load_config(path: str | Path) -> TranslatorConfig:
    return parse_config(Path(path).read_text(encoding="utf-8"))


def render_config(
    *,
    upstream_port: int,
    downstream_port: int,
    user_identity: str,
    min_hashrate: float = 100e9,
    shares_per_minute: float = 6.0,
    enable_vardiff: bool = True,
    log_file: str | None = None,
    monitoring_address: str | None = None,
    aggregate_channels: bool = False,
) -> str:
    """A config in the pinned generation's shape (used by tests and fixtures)."""
    lines = [
        'downstream_address = "127.0.0.1"',
        f"downstream_port = {downstream_port}",
        "downstream_extranonce2_size = 4",
        f"aggregate_channels = {'true' if aggregate_channels else 'false'}",
    ]
    if log_file:
        lines.append(f'log_file = "{log_file}"')
    if monitoring_address:
        lines.append(f'monitoring_address = "{monitoring_address}"')
    lines += [
        "",
        "[downstream_difficulty_config]",
        f"min_individual_miner_hashrate = {min_hashrate!r}",
        f"shares_per_minute = {shares_per_minute!r}",
        f"enable_vardiff = {'true' if enable_vardiff else 'false'}",
        "job_keepalive_interval_secs = 60",
        "",
        "[[upstreams]]",
        'address = "127.0.0.1"',
        f"port = {upstream_port}",
        'authority_pubkey = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72"',
        f'user_identity = "{user_identity}"',
        "",
    ]
    return "\n".join(lines)
