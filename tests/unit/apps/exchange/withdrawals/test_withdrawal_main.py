"""``python -m scnode_exchange.withdrawals`` refuses bad settings with a reason (exit 2)."""

from __future__ import annotations

import json

import pytest

from scnode_exchange.withdrawals.__main__ import main
from scnode_exchange.withdrawals.settings import WithdrawalSettings, build_policies


def test_bad_settings_exit_2_naming_the_problem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCNODE_EXCHANGE_CHAINS", json.dumps({"bitcoin": {"asset": "SATS",
                       "api_url": "http://127.0.0.1:1", "api_key": "k"}}))  # fmt: skip
    monkeypatch.setenv("SCNODE_EXCHANGE_WITHDRAWALS", json.dumps({"dogecoin": {}}))
    assert main([]) == 2
    assert "dogecoin" in capsys.readouterr().err
    monkeypatch.setenv("SCNODE_EXCHANGE_WITHDRAWALS", json.dumps({"bitcoin": {"hrp": "BC!"}}))
    assert main([]) == 2
    monkeypatch.setenv("SCNODE_EXCHANGE_CRASH_AT", "sometime")
    monkeypatch.setenv("SCNODE_EXCHANGE_WITHDRAWALS", "{}")
    assert main([]) == 2


def test_policies_take_chain_defaults_and_the_global_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCNODE_EXCHANGE_CHAINS", json.dumps({
        "bitcoin": {"asset": "SATS", "api_url": "http://a", "api_key": "k", "confirmations": 3},
        "azcoin": {"asset": "AZC", "api_url": "http://b", "api_key": "k"},
    }))  # fmt: skip
    monkeypatch.setenv(
        "SCNODE_EXCHANGE_WITHDRAWALS", json.dumps({"bitcoin": {"hrp": "bcrt", "flat_fee": 10}})
    )
    monkeypatch.setenv("SCNODE_EXCHANGE_WITHDRAWAL_APPROVAL_THRESHOLD", "777")
    monkeypatch.setenv("SCNODE_EXCHANGE_SESSION_SECRET_FILE", "/elsewhere")  # the app's, ignored
    policies = WithdrawalSettings().policies()
    assert (policies["bitcoin"].hrp, policies["bitcoin"].fee) == ("bcrt", 10)
    assert (policies["azcoin"].asset, policies["azcoin"].hrp) == ("AZC", "az")
    assert policies["azcoin"].approval_threshold == 777
    with pytest.raises(ValueError, match="without a chain API"):
        build_policies({"bitcoin": "SATS"}, {"litecoin": {}}, 0)
