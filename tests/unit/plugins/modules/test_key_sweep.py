"""The key_sweep module with the RPC stubbed at ``ChainRpcClient._call``, answering with the
results recorded from a real Bitcoin Core v30 node sweeping the fixture key (and AZCoin v23's)."""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn
from unittest import mock

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.satoshiware.scnode.plugins.module_utils._chain_rpc import (  # type: ignore[import-untyped]
    ChainRpcClient,
    ChainRpcResponseError,
)
from ansible_collections.satoshiware.scnode.plugins.module_utils._sweep import (  # type: ignore[import-untyped]
    decode_wif,
    dust_limit_of,
)
from ansible_collections.satoshiware.scnode.plugins.modules import (  # type: ignore[import-untyped]
    key_sweep,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
# The regtest key the fixtures were recorded with (public test data, holds nothing anywhere).
FIXTURE_WIF = "cMznicmqURZwXatKiEh3rXJHXLm7ttYuK6LBUzHjL56GYi6xe7MU"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


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
        mock.patch.object(key_sweep.AnsibleModule, "exit_json", _exit_json),
        mock.patch.object(key_sweep.AnsibleModule, "fail_json", _fail_json),
    ):
        yield


def wif(prefix: int, secret: bytes | None = None, compressed: bool = True) -> str:
    """A WIF made at test time (base58check by hand, so the test does not trust the module)."""
    payload = (
        bytes([prefix]) + (secret or secrets.token_bytes(32)) + (b"\x01" if compressed else b"")
    )
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    number = int.from_bytes(raw, "big")
    text = ""
    while number:
        number, rest = divmod(number, 58)
        text = _B58[rest] + text
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + text


def recorded(name: str) -> Any:
    """The ``result`` of a recorded answer, parsed as the client parses it."""
    raw = json.loads((FIXTURES / (name + ".json")).read_text())["response_raw"]
    return json.loads(raw, parse_float=Decimal)["result"]


TXOUT = {"bestblock": "00" * 32, "confirmations": 1, "value": Decimal("1"), "coinbase": False}


def v30_answers() -> dict[str, Any]:
    """A node holding 1 BTC on the fixture key's P2WPKH address, as recorded."""
    return {
        "getblockchaininfo": recorded("bitcoind-v30/018_getblockchaininfo_h101"),
        "scantxoutset": recorded("bitcoind-v30/047_scantxoutset_combo_wif"),
        "gettxout": TXOUT,
        "getnewaddress": recorded("bitcoind-v30/049_getnewaddress_default"),
        "getaddressinfo": {"scriptPubKey": "0014ee6e4bfb2c17f79bcd6b50426959bae09898bd49"},
        "createrawtransaction": recorded("bitcoind-v30/050_createrawtransaction"),
        "signrawtransactionwithkey": recorded("bitcoind-v30/052_signrawtransactionwithkey"),
        "decoderawtransaction": recorded("bitcoind-v30/053_decoderawtransaction"),
        "sendrawtransaction": recorded("bitcoind-v30/055_sendrawtransaction"),
    }


class Node:
    """The stubbed call point: answers by method, records (path, method, params)."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, Any]] = []

    def __call__(self, client: ChainRpcClient, path: str, method: str, params: Any) -> Any:
        self.calls.append((path, method, copy.deepcopy(params)))
        answer = self.answers[method]
        if isinstance(answer, Exception):
            raise answer
        return copy.deepcopy(answer)

    def methods(self) -> list[str]:
        return [call[1] for call in self.calls]

    def params_of(self, method: str) -> Any:
        return next(call[2] for call in self.calls if call[1] == method)


def run(args: dict[str, Any], node: Node, check_mode: bool = False) -> dict[str, Any]:
    module_args = {"rpc_url": "http://127.0.0.1:18443", "wallet": "wallet", **args}
    if check_mode:
        module_args["_ansible_check_mode"] = True
    with (
        patch_module_args(module_args),
        mock.patch.object(ChainRpcClient, "_call", autospec=True, side_effect=node),
        pytest.raises((AnsibleExitJson, AnsibleFailJson)) as finished,
    ):
        key_sweep.main()
    result: dict[str, Any] = finished.value.args[0]
    text = json.dumps(result)  # what a module returns must be JSON
    for key in args.get("keys", []):
        assert key not in text, "a key leaked into the module's result"
    return result


def test_sweeps_the_recorded_coin_into_a_fresh_wallet_address() -> None:
    node = Node(v30_answers())
    result = run({"keys": [FIXTURE_WIF], "fee_rate": 1}, node)

    assert not result.get("failed"), result
    assert result["changed"] is True
    assert result["txid"] == "1229965db14f46bc5c9c7c063268db47eeb7e308560932159f27a3e1a884189d"
    assert result["address"] == "bcrt1qaehyh7evzlmehntt2ppxjkd6uzvf302fs5na6m"
    # one P2WPKH input and one P2WPKH output: 110 vB (the real signed tx: weight 437)
    assert (result["found_sat"], result["fee_sat"], result["amount_sat"]) == (
        100_000_000,
        110,
        99_999_890,
    )
    assert result["vsize"] == 110 and result["fee_rate_sat_vb"] == 1.0
    assert node.params_of("scantxoutset") == ["start", [f"combo({FIXTURE_WIF})"]]
    assert node.params_of("gettxout") == [
        "08e2895a1245c6cc0d6d63e3c451bd8ac1d1f51d02503166d73f81533b50353d",
        0,
        True,
    ]
    inputs, outputs = node.params_of("createrawtransaction")
    assert inputs == [
        {"txid": "08e2895a1245c6cc0d6d63e3c451bd8ac1d1f51d02503166d73f81533b50353d", "vout": 0}
    ]
    assert outputs == [{"bcrt1qaehyh7evzlmehntt2ppxjkd6uzvf302fs5na6m": Decimal("0.99999890")}]
    _hexstring, keys, prevtxs = node.params_of("signrawtransactionwithkey")
    assert keys == [FIXTURE_WIF]
    assert prevtxs[0]["scriptPubKey"] == "0014ddbc8c217bb5b2f7baf36b77b6d7ed8ae8027db7"
    assert prevtxs[0]["amount"] == Decimal("1.00000000")
    # the address comes from the named wallet, labelled
    new_address = [c for c in node.calls if c[1] == "getnewaddress"]
    assert new_address == [("/wallet/wallet", "getnewaddress", ["sweep"])]
    assert node.methods()[-1] == "sendrawtransaction"


def test_fee_rate_scales_the_fee_and_a_fractional_rate_rounds_up() -> None:
    node = Node(v30_answers())
    result = run({"keys": [FIXTURE_WIF], "fee_rate": 2.5, "label": "paper"}, node)
    assert result["fee_sat"] == 275 and result["amount_sat"] == 100_000_000 - 275
    assert node.params_of("getnewaddress") == ["paper"]


def test_check_mode_reports_the_funds_and_touches_neither_wallet_nor_mempool() -> None:
    node = Node(v30_answers())
    result = run({"keys": [FIXTURE_WIF], "fee_rate": 1}, node, check_mode=True)
    assert result["changed"] is True
    assert result["found_sat"] == 100_000_000 and result["amount_sat"] == 99_999_890
    assert "would sweep 99999890 sat" in result["msg"]
    assert "txid" not in result
    assert not {"getnewaddress", "createrawtransaction", "sendrawtransaction"} & set(node.methods())


def test_nothing_to_sweep_is_not_a_change() -> None:
    answers = v30_answers()
    answers["scantxoutset"] = recorded("bitcoind-v30/061_scantxoutset_combo_wif_after_spend")
    node = Node(answers)
    result = run({"keys": [FIXTURE_WIF], "fee_rate": 1}, node)
    assert result["changed"] is False and not result.get("failed")
    assert result["found_sat"] == 0 and "nothing to sweep" in result["msg"]
    assert "getnewaddress" not in node.methods()


def test_a_second_run_while_the_sweep_is_in_the_mempool_changes_nothing() -> None:
    answers = v30_answers()
    answers["gettxout"] = None  # the coin is spent by our unconfirmed sweep
    node = Node(answers)
    result = run({"keys": [FIXTURE_WIF], "fee_rate": 1}, node)
    assert result["changed"] is False and not result.get("failed")
    assert result["skipped"][0]["reason"].startswith("already spent by an unconfirmed")
    assert "sendrawtransaction" not in node.methods()


def test_immature_coinbase_outputs_are_skipped() -> None:
    answers = v30_answers()
    answers["gettxout"] = {**TXOUT, "coinbase": True, "confirmations": 12}
    node = Node(answers)
    result = run({"keys": [FIXTURE_WIF], "fee_rate": 1}, node)
    assert result["changed"] is False
    assert result["skipped"][0]["reason"] == "immature coinbase (12 of 100 confirmations)"


@pytest.mark.parametrize("network", ["main"])
def test_a_mainnet_key_on_a_regtest_node_is_refused_before_it_reaches_the_node(
    network: str,
) -> None:
    mainnet_key = wif(0x80)
    node = Node(v30_answers())
    result = run({"keys": [FIXTURE_WIF, mainnet_key], "fee_rate": 1}, node)
    assert result["failed"]
    assert "key #2 is a mainnet key (WIF prefix 0x80)" in result["msg"]
    assert "node runs the regtest network" in result["msg"]
    assert node.methods() == ["getblockchaininfo"]  # no key was sent anywhere


def test_a_test_key_on_a_mainnet_node_is_refused() -> None:
    answers = v30_answers()
    answers["getblockchaininfo"] = {**answers["getblockchaininfo"], "chain": "main"}
    node = Node(answers)
    result = run({"keys": [FIXTURE_WIF], "fee_rate": 1}, node)
    assert result["failed"]
    assert "key #1 is a testnet/signet/regtest key (WIF prefix 0xef)" in result["msg"]
    assert node.methods() == ["getblockchaininfo"]


def test_a_mainnet_key_is_accepted_on_a_mainnet_node() -> None:
    answers = v30_answers()
    answers["getblockchaininfo"] = {**answers["getblockchaininfo"], "chain": "main"}
    answers["scantxoutset"] = recorded("bitcoind-v30/061_scantxoutset_combo_wif_after_spend")
    key = wif(0x80, compressed=False)
    node = Node(answers)
    result = run({"keys": [key], "fee_rate": 1}, node)
    assert result["changed"] is False and not result.get("failed")
    assert node.params_of("scantxoutset") == ["start", [f"combo({key})"]]


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"), "has a wrong checksum"),
        (lambda k: k[:10] + "0" + k[11:], "is not base58 text"),
        (lambda k: "abc", "is too short"),
    ],
)
def test_a_mistyped_key_is_refused_without_quoting_it(mangle: Any, reason: str) -> None:
    bad = mangle(FIXTURE_WIF)
    node = Node(v30_answers())
    result = run({"keys": [bad], "fee_rate": 1}, node)
    assert result["failed"] and f"key #1 {reason}" in result["msg"]
    assert bad not in json.dumps(result)
    assert "scantxoutset" not in node.methods()


def test_an_address_is_not_a_key() -> None:
    # a P2PKH testnet address is valid base58check with prefix 0x6f: not a WIF
    node = Node(v30_answers())
    result = run({"keys": ["n1jPVx624VP9b6cBNgeRTjH18F6i58AGtv"], "fee_rate": 1}, node)
    assert result["failed"] and "is not a WIF private key (prefix 0x6f)" in result["msg"]


def test_dust_is_refused_with_the_figures() -> None:
    answers = v30_answers()
    scan = answers["scantxoutset"]
    scan["unspents"][0]["amount"] = Decimal("0.00000300")
    scan["total_amount"] = Decimal("0.00000300")
    node = Node(answers)
    result = run({"keys": [FIXTURE_WIF], "fee_rate": 1}, node)
    assert result["failed"]
    assert result["msg"].startswith("dust: the keys hold 300 sat; at 1 sat/vB the fee is 110 sat")
    assert "leaving 190 sat, below the dust limit of 294 sat" in result["msg"]
    assert "getnewaddress" not in node.methods()  # a refusal costs no address


def test_fee_above_the_value_is_refused() -> None:
    answers = v30_answers()
    scan = answers["scantxoutset"]
    scan["unspents"][0]["amount"] = Decimal("0.00000500")
    node = Node(answers)
    result = run({"keys": [FIXTURE_WIF], "fee_rate": 10}, node)
    assert result["failed"]
    assert result["msg"].startswith("the fee exceeds the value: the keys hold 500 sat in 1 output")
    assert result["skipped"][0]["reason"].startswith("uneconomic: spending it costs 680 sat")
    assert "sendrawtransaction" not in node.methods()


def test_uneconomic_outputs_are_left_out_of_a_sweep_of_the_rest() -> None:
    answers = v30_answers()
    scan = answers["scantxoutset"]
    small = {**scan["unspents"][0], "vout": 7, "amount": Decimal("0.00000400")}
    scan["unspents"].append(small)
    node = Node(answers)
    result = run({"keys": [FIXTURE_WIF], "fee_rate": 10}, node)
    assert result["changed"] is True
    assert [i["vout"] for i in result["inputs"]] == [0]
    assert result["skipped"][0]["vout"] == 7
    assert result["found_sat"] == 100_000_400 and result["fee_sat"] == 1100


def test_node_errors_never_quote_a_key() -> None:
    answers = v30_answers()
    answers["scantxoutset"] = ChainRpcResponseError(
        f"Invalid descriptor: key '{FIXTURE_WIF}' is not valid", code=-5, http_status=500
    )
    node = Node(answers)
    result = run({"keys": [FIXTURE_WIF], "fee_rate": 1}, node)
    assert result["failed"] and result["rpc_code"] == -5
    assert "key '<key #1>' is not valid" in result["msg"]


def test_an_incomplete_signature_fails_before_broadcast() -> None:
    answers = v30_answers()
    answers["signrawtransactionwithkey"] = {
        "hex": "00",
        "complete": False,
        "errors": [{"txid": "ab" * 32, "vout": 0, "error": "Unable to sign input"}],
    }
    node = Node(answers)
    result = run({"keys": [FIXTURE_WIF], "fee_rate": 1}, node)
    assert result["failed"] and "could not sign every input" in result["msg"]
    assert "sendrawtransaction" not in node.methods()


def test_without_fee_rate_the_node_estimate_is_used() -> None:
    answers = v30_answers()
    answers["estimatesmartfee"] = {"feerate": Decimal("0.00002000"), "blocks": 6}
    node = Node(answers)
    result = run({"keys": [FIXTURE_WIF]}, node)
    assert result["fee_sat"] == 220  # 2 sat/vB
    assert node.params_of("estimatesmartfee") == [6]


def test_without_fee_rate_and_without_estimate_it_asks_for_one() -> None:
    answers = v30_answers()
    answers["estimatesmartfee"] = recorded("bitcoind-v30/036_estimatesmartfee")
    result = run({"keys": [FIXTURE_WIF]}, Node(answers))
    assert result["failed"] and "no fee estimate yet" in result["msg"]
    assert "give fee_rate" in result["msg"]


def test_azcoin_v23_scan_without_coinbase_fields_is_understood() -> None:
    answers = v30_answers()
    answers["getblockchaininfo"] = {"chain": "regtest", "blocks": 102, "headers": 102}
    answers["scantxoutset"] = recorded("azcoind-v23/021_scantxoutset_combo_wif")
    node = Node(answers)
    result = run({"keys": [FIXTURE_WIF], "fee_rate": 1}, node, check_mode=True)
    assert result["found_sat"] == 100_000_000 and result["amount_sat"] == 99_999_890
    assert result["inputs"][0]["vout"] == 1


def test_a_node_in_initial_block_download_is_refused() -> None:
    answers = v30_answers()
    answers["getblockchaininfo"] = {
        **answers["getblockchaininfo"],
        "initialblockdownload": True,
        "blocks": 5,
        "headers": 900,
    }
    result = run({"keys": [FIXTURE_WIF], "fee_rate": 1}, Node(answers))
    assert result["failed"] and "initial block download (height 5 of 900)" in result["msg"]


def test_keys_are_no_log() -> None:
    spec = key_sweep.argument_spec()
    assert spec["keys"]["no_log"] is True and spec["rpc_password"]["no_log"] is True


def test_wif_envelope_and_dust_limits() -> None:
    assert decode_wif(FIXTURE_WIF).network == "test"
    assert decode_wif(wif(0x80, compressed=False)).compressed is False
    with pytest.raises(ValueError, match="outside the range"):
        decode_wif(wif(0x80, secret=b"\0" * 32))
    assert dust_limit_of("0014" + "00" * 20) == 294  # Core's P2WPKH dust at 3 sat/vB
    assert dust_limit_of("76a914" + "00" * 20 + "88ac") == 546  # and P2PKH's
    assert dust_limit_of("5120" + "00" * 32) == 330  # P2TR
