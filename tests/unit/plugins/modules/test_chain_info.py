"""The chain_info module: RPC stubbed at ``ChainRpcClient._call``, and end to end against
answers recorded from real Bitcoin Core v30 and AZCoin (v23) nodes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn
from unittest import mock

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.satoshiware.scnode.plugins.module_utils._chain_rpc import (  # type: ignore[import-untyped]
    ChainRpcAuthError,
    ChainRpcClient,
)
from ansible_collections.satoshiware.scnode.plugins.modules import (  # type: ignore[import-untyped]
    chain_info,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PASSWORD = "s3cret-Pa55word"


class AnsibleExitJson(Exception):  # noqa: N818 - the name every collection's tests use
    """exit_json was called; the result is in args[0]."""


class AnsibleFailJson(Exception):  # noqa: N818
    """fail_json was called; the result is in args[0]."""


def _exit_json(self: Any, **result: Any) -> NoReturn:
    result.setdefault("changed", False)
    raise AnsibleExitJson(result)


def _fail_json(self: Any, msg: str, **result: Any) -> NoReturn:
    result["msg"] = msg
    result["failed"] = True
    raise AnsibleFailJson(result)


@pytest.fixture(autouse=True)
def _module_exits() -> Iterator[None]:
    with (
        mock.patch.object(chain_info.AnsibleModule, "exit_json", _exit_json),
        mock.patch.object(chain_info.AnsibleModule, "fail_json", _fail_json),
    ):
        yield


def run_module(args: dict[str, Any]) -> dict[str, Any]:
    with patch_module_args(args), pytest.raises(AnsibleExitJson) as finished:
        chain_info.main()
    result: dict[str, Any] = finished.value.args[0]
    json.dumps(result)  # what a module returns must be JSON, Decimals included
    return result


def recorded_result(name: str) -> Any:
    """The ``result`` of a recorded answer, parsed as the client parses it."""
    raw = json.loads((FIXTURES / (name + ".json")).read_text())["response_raw"]
    return json.loads(raw, parse_float=Decimal)["result"]


def stub_calls(answers: dict[str, Any]) -> Any:
    """Replace the client's one RPC call point; returns the mock to inspect the calls."""

    def fake_call(self: ChainRpcClient, path: str, method: str, params: Any) -> Any:
        answer = answers[method]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return mock.patch.object(ChainRpcClient, "_call", autospec=True, side_effect=fake_call)


def test_synced_pruned_node() -> None:
    answers = {
        "getblockchaininfo": recorded_result(
            "bitcoind-v30/prune_002_getblockchaininfo_prune550_h200"
        ),
        "listwallets": recorded_result("bitcoind-v30/064_listwallets_two"),
    }
    with stub_calls(answers) as calls:
        result = run_module({"rpc_user": "monitor", "rpc_password": PASSWORD})
    assert result["changed"] is False
    assert result["chain"] == "regtest"
    assert (result["blocks"], result["headers"], result["synced"]) == (200, 200, True)
    assert result["pruned"] is True
    assert result["prune_height"] == 0
    assert result["wallets"] == ["wallet", "restored"]
    assert result["blockchain_info"]["prune_target_size"] == 576716800
    assert isinstance(result["blockchain_info"]["difficulty"], float)
    assert "balances_sat" not in result
    assert [call.args[1:3] for call in calls.call_args_list] == [
        ("/", "getblockchaininfo"),
        ("/", "listwallets"),
    ]


def test_node_in_initial_block_download_is_not_synced() -> None:
    answers = {
        "getblockchaininfo": recorded_result("bitcoind-v30/001_getblockchaininfo"),
        "listwallets": [],
    }
    with stub_calls(answers):
        result = run_module({})
    assert result["synced"] is False
    assert result["verification_progress"] < 0.001
    assert "prune_height" not in result


def test_wallet_balances_are_integer_sats() -> None:
    answers = {
        "getblockchaininfo": recorded_result("azcoind-v23/010_getblockchaininfo_h101"),
        "listwallets": ["scnode"],
        "getbalances": recorded_result("azcoind-v23/011_getbalances"),
    }
    with stub_calls(answers) as calls:
        result = run_module({"rpc_url": "http://127.0.0.1:19332", "wallet": "scnode"})
    assert result["balances_sat"] == {
        "trusted": 1_500_000_000,
        "untrusted_pending": 0,
        "immature": 150_000_000_000,
    }
    assert calls.call_args_list[-1].args[1:3] == ("/wallet/scnode", "getbalances")
    assert result["blockchain_info"]["warnings"] == ""


def test_check_mode_reads_all_the_same() -> None:
    answers = {
        "getblockchaininfo": recorded_result("azcoind-v23/010_getblockchaininfo_h101"),
        "listwallets": [],
    }
    with stub_calls(answers):
        result = run_module({"_ansible_check_mode": True})
    assert result["changed"] is False
    assert result["synced"] is True


def test_rpc_failure_fails_the_task_without_the_password() -> None:
    refused = ChainRpcAuthError("the node refused the credentials (HTTP 401)", http_status=401)
    with (
        stub_calls({"getblockchaininfo": refused}),
        patch_module_args({"rpc_user": "monitor", "rpc_password": PASSWORD}),
        pytest.raises(AnsibleFailJson) as failed,
    ):
        chain_info.main()
    result = failed.value.args[0]
    assert result["failed"] is True
    assert result["http_status"] == 401
    assert result["rpc_code"] is None
    assert PASSWORD not in json.dumps(result)


def test_password_and_cookie_are_mutually_exclusive() -> None:
    args = {"rpc_user": "u", "rpc_password": PASSWORD, "rpc_cookie_file": "/tmp/.cookie"}
    with patch_module_args(args), pytest.raises(AnsibleFailJson) as failed:
        chain_info.main()
    assert "mutually exclusive" in failed.value.args[0]["msg"]


def test_end_to_end_against_recorded_bitcoind_answers(rpc_replay: Any) -> None:
    rpc_replay.queue(
        "bitcoind-v30/018_getblockchaininfo_h101",
        "bitcoind-v30/064_listwallets_two",
        "bitcoind-v30/019_getbalances",
    )
    result = run_module(
        {
            "rpc_url": rpc_replay.url,
            "rpc_user": "monitor",
            "rpc_password": PASSWORD,
            "wallet": "wallet",
            "rpc_jsonrpc_version": "2.0",
        }
    )
    assert result["blocks"] == 101
    assert result["balances_sat"]["trusted"] == 5_000_000_000
    assert [r.path for r in rpc_replay.requests] == ["/", "/", "/wallet/wallet"]
    assert {r.body["jsonrpc"] for r in rpc_replay.requests} == {"2.0"}


def test_end_to_end_wrong_password_on_azcoin(rpc_replay: Any) -> None:
    rpc_replay.queue("azcoind-v23/022_err_wrong_password")
    with (
        patch_module_args(
            {"rpc_url": rpc_replay.url, "rpc_user": "monitor", "rpc_password": PASSWORD}
        ),
        pytest.raises(AnsibleFailJson) as failed,
    ):
        chain_info.main()
    result = failed.value.args[0]
    assert "HTTP 401" in result["msg"]
    assert PASSWORD not in json.dumps(result)
