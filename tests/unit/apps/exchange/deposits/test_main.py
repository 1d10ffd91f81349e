"""``python -m scnode_exchange.deposits`` refuses to start without usable settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from scnode_exchange.deposits.__main__ import main
from scnode_exchange.deposits.settings import DepositSettings


def test_refuses_to_start_without_chains_or_with_a_bad_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SCNODE_EXCHANGE_CHAINS", raising=False)
    env = tmp_path / "exchange.env"
    env.write_text(f"SCNODE_EXCHANGE_DATABASE_URL=sqlite:///{tmp_path / 'x.sqlite3'}\n")
    assert main(["--env-file", str(env)]) == 2
    assert "no chain to follow" in capsys.readouterr().err
    env.write_text(
        'SCNODE_EXCHANGE_CHAINS={"bitcoin": {"api_url": "http://127.0.0.1:1", '
        '"api_key": "k", "confirmations": 0}}\n'
    )
    assert main(["--env-file", str(env)]) == 2
    assert "SCNODE_EXCHANGE_CHAINS" in capsys.readouterr().err


def test_reads_the_app_env_file_and_ignores_the_app_only_names(tmp_path: Path) -> None:
    env = tmp_path / "exchange.env"
    env.write_text(
        "SCNODE_EXCHANGE_DATABASE_URL=sqlite:////tmp/x.sqlite3\n"
        "SCNODE_EXCHANGE_SESSION_SECRET_FILE=/etc/secret\n"
        'SCNODE_EXCHANGE_CHAINS={"azcoin": {"api_url": "http://127.0.0.1:8402", '
        '"api_key": "secret-key", "confirmations": 6}}\n'
    )
    settings = DepositSettings(_env_file=str(env))  # type: ignore[call-arg]
    assert settings.chains["azcoin"].confirmations == 6
    assert settings.chains["azcoin"].asset is None  # AZC by default
    assert "secret-key" not in repr(settings)
