"""The Lightning API's entry point refuses bad settings by name (exit 2), never starting."""

from __future__ import annotations

from pathlib import Path

import pytest

from scnode_lightning_api.__main__ import main


def test_bad_settings_are_named_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = tmp_path / "lightning-api.env"
    env.write_text(
        "SCNODE_LIGHTNING_API_RPC_SOCKET=/run/lightning/lightning-rpc\n"
        f"SCNODE_LIGHTNING_API_API_KEYS_FILE={tmp_path / 'keys.json'}\n"
        f"SCNODE_LIGHTNING_API_STATE_DB={tmp_path / 'state.sqlite'}\n"
        'SCNODE_LIGHTNING_API_ZMQ_ENDPOINTS=["127.0.0.1:28001"]\n'
        "SCNODE_LIGHTNING_API_BITCOIN_RPC_PASSWORD=changeme\n"
        "SCNODE_LIGHTNING_API_PAY_COMMAND=sendpay\n"
    )
    assert main(["--env-file", str(env)]) == 2
    err = capsys.readouterr().err
    for name in ("ZMQ_ENDPOINTS", "BITCOIN_RPC_PASSWORD", "PAY_COMMAND"):
        assert f"setting SCNODE_LIGHTNING_API_{name}" in err
    assert "changeme" not in err
