"""The withdrawal worker inside the exchange app takes the same settings as the one run alone
(python -m scnode_exchange.withdrawals): an operator's send-key prefix, batch and follow
interval are honoured whichever way the worker runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from scnode_exchange.api.app import create_app
from scnode_exchange.withdrawals.settings import WithdrawalSettings
from tests.unit.apps.exchange.api.node import make_settings

CHAINS = {
    "bitcoin": {
        "asset": "SATS",
        "api_url": "http://127.0.0.1:9",  # nobody listens: nothing is ever sent
        "api_key": "scnk_00000000_" + "a" * 43,
    }
}


def test_in_app_worker_uses_the_operators_prefix_batch_and_follow_interval(
    tmp_path: Path,
) -> None:
    settings, _ = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'x.sqlite3'}",
        chains=CHAINS,
        withdrawal_key_prefix="node7",
        withdrawal_batch=5,
        withdrawal_follow_seconds=3.0,
    )
    app = create_app(settings)
    with TestClient(app):
        worker = app.state.withdrawal_worker
        assert (worker.batch, worker.follow_seconds) == (5, 3.0)
        assert app.state.withdrawal_service.send_key_prefix == "node7"


def test_the_app_and_the_standalone_worker_accept_the_same_values() -> None:
    fields = set(WithdrawalSettings.model_fields)
    assert {"withdrawal_batch", "withdrawal_follow_seconds", "withdrawal_key_prefix"} <= fields


def test_a_bad_prefix_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="withdrawal_key_prefix"):
        make_settings(
            tmp_path, f"sqlite:///{tmp_path / 'y.sqlite3'}", withdrawal_key_prefix="no spaces"
        )
