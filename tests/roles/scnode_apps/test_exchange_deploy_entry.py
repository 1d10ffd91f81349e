"""What the scnode_apps role relies on in the exchange package when it deploys it: the
migration entry point its unit runs before each start (backup first) and API keys read from
the files the role writes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic import command

from scnode_exchange.db import alembic_config
from scnode_exchange.migrate import current_revision, head_revision, main
from scnode_exchange.mining.settings import MiningSettings
from scnode_exchange.settings import ExchangeSettings


def _run(
    capsys: pytest.CaptureFixture[str], url: str, backups: Path, keep: int = 5
) -> dict[str, Any]:
    env = backups.parent / "settings.env"
    env.write_text(f"SCNODE_EXCHANGE_DATABASE_URL={url}\n")
    assert main(["--backup-dir", str(backups), "--keep", str(keep), "--env-file", str(env)]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def test_new_database_is_created_without_backup_then_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'exchange.sqlite3'}"
    first = _run(capsys, url, tmp_path / "backups")
    assert first == {"before": None, "after": head_revision(url), "backup": None}
    again = _run(capsys, url, tmp_path / "backups")
    assert again["before"] == again["after"] and again["backup"] is None
    assert not (tmp_path / "backups").exists()


def test_an_older_schema_is_backed_up_before_the_upgrade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'exchange.sqlite3'}"
    command.upgrade(alembic_config(url), "head")
    command.downgrade(alembic_config(url), "-1")
    old = current_revision(url)
    assert old is not None and old != head_revision(url)

    result = _run(capsys, url, tmp_path / "backups")
    assert result["before"] == old and result["after"] == head_revision(url)
    assert current_revision(url) == head_revision(url)
    saved = Path(result["backup"])
    with sqlite3.connect(saved) as copy:
        (rev,) = copy.execute("SELECT version_num FROM alembic_version").fetchone()
    assert rev == old  # the backup is the schema as it was before


def test_only_the_newest_backups_are_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'exchange.sqlite3'}"
    backups = tmp_path / "backups"
    backups.mkdir()
    for n in range(4):
        (backups / f"exchange-20200101T00000{n}Z-0001.sqlite3").write_bytes(b"")
    command.upgrade(alembic_config(url), "head")
    command.downgrade(alembic_config(url), "-1")
    result = _run(capsys, url, backups, keep=2)
    kept = sorted(p.name for p in backups.iterdir())
    assert len(kept) == 2 and Path(result["backup"]).name in kept


def test_chain_and_pool_keys_are_read_from_their_files(tmp_path: Path) -> None:
    for name in ("chain", "stats"):
        (tmp_path / f"{name}.key").write_text(f"sk_{name}_secret\n")
    files = {"session_secret_file": tmp_path / "s", "owner_api_keys_file": tmp_path / "o"}
    chain = {
        "asset": "SATS",
        "api_url": "http://10.0.0.1:8501",
        "api_key_file": str(tmp_path / "chain.key"),
    }
    settings = ExchangeSettings.model_validate({**files, "chains": {"bitcoin": chain}})
    assert settings.chains["bitcoin"].api_key.get_secret_value() == "sk_chain_secret"
    pool = {
        "chain_api_url": "http://10.0.0.1:8501",
        "chain_api_key_file": str(tmp_path / "chain.key"),
        "stats_api_url": "http://10.0.0.3:8511",
        "stats_api_key_file": str(tmp_path / "stats.key"),
        "first_window_start": 0,
    }
    pools = MiningSettings.model_validate({"mining_pools": {"btc": pool}}).mining_pools
    assert pools["btc"].stats_api_key.get_secret_value() == "sk_stats_secret"
    # a missing key file is refused by name, never taken as an empty key
    missing = {**chain, "api_key_file": str(tmp_path / "missing.key")}
    with pytest.raises(ValueError, match=r"api_key_file .*missing\.key"):
        ExchangeSettings.model_validate({**files, "chains": {"bitcoin": missing}})
