"""``python -m scnode_exchange.mining`` refuses unusable settings before touching anything, and
the app-lifespan hook builds nothing without pools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scnode_exchange.mining.__main__ import main
from scnode_exchange.mining.settings import MiningSettings, build_worker, mining_config

POOL = {
    "chain_api_url": "http://127.0.0.1:9",
    "chain_api_key": "k",
    "stats_api_url": "http://127.0.0.1:9",
    "stats_api_key": "k",
    "fee_bps": 250,
    "first_window_start": 0,
}


def _env(tmp_path: Path, pools: object) -> str:
    path = tmp_path / "exchange.env"
    db = tmp_path / "x.sqlite3"
    path.write_text(
        f"SCNODE_EXCHANGE_DATABASE_URL=sqlite:///{db}\n"
        f"SCNODE_EXCHANGE_MINING_POOLS={json.dumps(pools)}\n",
        encoding="utf-8",
    )
    return str(path)


@pytest.mark.parametrize(
    ("pools", "message"),
    [
        ({}, "no pool configured"),
        ({"azc": {**POOL, "fee_bps": 20_000}}, "MINING_POOLS"),
        ({"azc": {k: v for k, v in POOL.items() if k != "first_window_start"}}, "MINING_POOLS"),
        ({"ltc": POOL}, "unknown mining pools"),
    ],
)
def test_unusable_settings_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pools: object, message: str
) -> None:
    assert main(["--env-file", _env(tmp_path, pools)]) == 2
    assert message in capsys.readouterr().err


def test_config_per_pool_and_no_worker_without_pools(tmp_path: Path) -> None:
    settings = MiningSettings(_env_file=_env(tmp_path, {"azc": POOL}))  # type: ignore[call-arg]
    config = mining_config(settings.mining_pools)
    assert dict(config.fee_bps) == {"azc": 250, "btc": 0}
    assert dict(config.confirmations) == {"azc": 6, "btc": 6}
    assert build_worker(object(), None) is None  # type: ignore[arg-type]
