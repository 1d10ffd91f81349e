"""Auto-balancing settings: off by default, and a wrong combination is refused at start-up
with a message naming the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from scnode_lightning_api.settings import LightningApiSettings

BASE: dict[str, Any] = {
    "rpc_socket": Path("/run/lightning/lightning-rpc"),
    "api_keys_file": Path("/etc/scnode/keys.json"),
    "state_db": Path("/var/lib/scnode/state.sqlite"),
}
ON: dict[str, Any] = {
    **BASE,
    "rebalance_enabled": True,
    "rebalance_cluster_url": "http://10.77.0.1:8420",
    "cluster_peer_id": "02" + "ab" * 32,
}


def test_off_by_default_needs_nothing() -> None:
    settings = LightningApiSettings(**BASE)
    assert settings.rebalance_enabled is False


def test_enabled_with_cluster_url_and_peer_is_accepted() -> None:
    settings = LightningApiSettings(**ON)
    assert (settings.rebalance_low, settings.rebalance_high) == (0.3, 0.7)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rebalance_cluster_url": None}, "SCNODE_LIGHTNING_API_REBALANCE_CLUSTER_URL"),
        ({"cluster_peer_id": None}, "SCNODE_LIGHTNING_API_CLUSTER_PEER_ID"),
        ({"rebalance_cluster_url": "10.77.0.1:8420"}, "must start with http"),
        ({"rebalance_low": 0.6, "rebalance_high": 0.5}, "must be below rebalance_high"),
        ({"rebalance_high": 1.2}, "less than 1"),
        ({"rebalance_daily_max_sat": 5_000}, "above rebalance_daily_max_sat"),
        ({"rebalance_max_swap_sat": 5_000}, "above rebalance_max_swap_sat"),
    ],
)
def test_refused_with_a_clear_error(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LightningApiSettings(**{**ON, **change})
