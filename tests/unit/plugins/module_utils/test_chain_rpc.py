"""The chain JSON-RPC client against answers recorded from Bitcoin Core v30 and AZCoin (v23)."""

from __future__ import annotations

import base64
import socket
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.satoshiware.scnode.plugins.module_utils._chain_rpc import (  # type: ignore[import-untyped]
    ChainRpcAuthError,
    ChainRpcClient,
    ChainRpcConfigError,
    ChainRpcConnectionError,
    ChainRpcError,
    ChainRpcResponseError,
    amount_to_sats,
    sats_to_amount,
)

PASSWORD = "s3cret-Pa55word"


def client_for(replay: Any, **kwargs: Any) -> ChainRpcClient:
    settings: dict[str, Any] = {"user": "scnode", "password": PASSWORD, "timeout": 5.0}
    settings.update(kwargs)
    return ChainRpcClient(replay.url, **settings)


# --------------------------------------------------------------------------- amounts


@pytest.mark.parametrize(
    ("amount", "sats"),
    [
        (Decimal("0.00000001"), 1),
        (Decimal("15.00000000"), 1_500_000_000),
        (Decimal("20999999.97690000"), 2_099_999_997_690_000),
        (Decimal("-0.5"), -50_000_000),
        ("1.23456789", 123_456_789),
        (3, 300_000_000),
    ],
)
def test_amount_to_sats_is_exact(amount: Any, sats: int) -> None:
    assert amount_to_sats(amount) == sats
    assert isinstance(amount_to_sats(amount), int)


@pytest.mark.parametrize(
    "amount", [0.1, True, Decimal("0.000000001"), "1e-9", "abc", Decimal("NaN"), None]
)
def test_amount_to_sats_refuses_floats_and_inexact_values(amount: Any) -> None:
    with pytest.raises(ValueError):
        amount_to_sats(amount)


def test_sats_to_amount_round_trips() -> None:
    for sats in (0, 1, 546, 150_000_000, 2_099_999_997_690_000):
        amount = sats_to_amount(sats)
        assert amount_to_sats(amount) == sats
    assert format(sats_to_amount(1), "f") == "0.00000001"
    with pytest.raises(ValueError):
        sats_to_amount(1.0)


# --------------------------------------------------------------------------- replayed answers


def test_getblockchaininfo_v30_sends_basic_auth_and_parses_decimals(rpc_replay: Any) -> None:
    rpc_replay.queue("bitcoind-v30/001_getblockchaininfo")
    info = client_for(rpc_replay).call("getblockchaininfo")
    assert info["chain"] == "regtest"
    assert info["warnings"] == []
    assert isinstance(info["verificationprogress"], Decimal)
    sent = rpc_replay.requests[0]
    assert sent.path == "/"
    assert sent.body["method"] == "getblockchaininfo"
    assert sent.body["jsonrpc"] == "1.0"
    assert sent.body["params"] == []
    expected = base64.b64encode(("scnode:" + PASSWORD).encode()).decode()
    assert sent.headers["Authorization"] == "Basic " + expected


def test_azcoin_v23_warnings_string(rpc_replay: Any) -> None:
    rpc_replay.queue("azcoind-v23/010_getblockchaininfo_h101")
    info = client_for(rpc_replay).call("getblockchaininfo")
    assert info["blocks"] == 101
    assert info["warnings"] == ""


@pytest.mark.parametrize(
    ("transcript", "trusted", "immature"),
    [
        ("bitcoind-v30/019_getbalances", 5_000_000_000, 500_000_000_000),
        ("azcoind-v23/011_getbalances", 1_500_000_000, 150_000_000_000),
    ],
)
def test_wallet_call_uses_wallet_endpoint_and_exact_amounts(
    rpc_replay: Any, transcript: str, trusted: int, immature: int
) -> None:
    rpc_replay.queue(transcript)
    balances = client_for(rpc_replay, wallet="wallet").wallet_call("getbalances")
    assert rpc_replay.requests[0].path == "/wallet/wallet"
    assert amount_to_sats(balances["mine"]["trusted"]) == trusted
    assert amount_to_sats(balances["mine"]["immature"]) == immature


def test_wallet_names_are_url_encoded(rpc_replay: Any) -> None:
    rpc_replay.queue("bitcoind-v30/066_err_getwalletinfo_unknown_wallet")
    with pytest.raises(ChainRpcResponseError):
        client_for(rpc_replay).wallet_call("getwalletinfo", wallet="my wallet/1")
    assert rpc_replay.requests[0].path == "/wallet/my%20wallet%2F1"


def test_node_calls_ignore_the_clients_wallet(rpc_replay: Any) -> None:
    rpc_replay.queue("bitcoind-v30/064_listwallets_two")
    assert client_for(rpc_replay, wallet="wallet").call("listwallets") == ["wallet", "restored"]
    assert rpc_replay.requests[0].path == "/"


@pytest.mark.parametrize(
    "transcript",
    [
        "bitcoind-v30/073_err_wrong_password",
        "bitcoind-v30/074_err_no_auth_header",
        "azcoind-v23/022_err_wrong_password",
    ],
)
def test_http_401_is_an_auth_error_without_the_password(rpc_replay: Any, transcript: str) -> None:
    rpc_replay.queue(transcript)
    with pytest.raises(ChainRpcAuthError) as caught:
        client_for(rpc_replay).call("getblockchaininfo")
    assert caught.value.http_status == 401
    assert caught.value.code is None
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value.args)
    assert "401" in str(caught.value)


@pytest.mark.parametrize(
    ("transcript", "version", "http_status"),
    [
        ("bitcoind-v30/075_err_unknown_method_v1", "1.0", 404),
        ("bitcoind-v30/076_err_unknown_method_v2", "2.0", 200),
        ("azcoind-v23/023_err_unknown_method_v1", "1.0", 404),
        # AZCoin (v23) ignores "2.0" and answers in 1.x style with HTTP 404.
        ("azcoind-v23/024_err_unknown_method_v2", "2.0", 404),
    ],
)
def test_method_not_found_in_both_jsonrpc_modes(
    rpc_replay: Any, transcript: str, version: str, http_status: int
) -> None:
    rpc_replay.queue(transcript)
    with pytest.raises(ChainRpcResponseError) as caught:
        client_for(rpc_replay, jsonrpc_version=version).call("nosuchmethod")
    assert rpc_replay.requests[0].body["jsonrpc"] == version
    assert caught.value.code == -32601
    assert caught.value.message == "Method not found"
    assert caught.value.http_status == http_status
    assert str(caught.value) == "RPC error -32601: Method not found"


def test_wallet_not_specified_is_rpc_error_minus_19(rpc_replay: Any) -> None:
    rpc_replay.queue("bitcoind-v30/065_err_getwalletinfo_root_multiple_wallets")
    with pytest.raises(ChainRpcResponseError) as caught:
        client_for(rpc_replay).wallet_call("getwalletinfo")
    assert rpc_replay.requests[0].path == "/"
    assert caught.value.code == -19
    assert caught.value.http_status == 500
    assert "/wallet/<walletname>" in caught.value.message


@pytest.mark.parametrize(
    ("transcript", "version"),
    [
        ("bitcoind-v30/066_err_getwalletinfo_unknown_wallet", "1.0"),
        ("bitcoind-v30/067_err_getwalletinfo_unknown_wallet_v2", "2.0"),
        ("azcoind-v23/027_err_getwalletinfo_unknown_wallet", "1.0"),
    ],
)
def test_unknown_wallet_is_rpc_error_minus_18(
    rpc_replay: Any, transcript: str, version: str
) -> None:
    rpc_replay.queue(transcript)
    with pytest.raises(ChainRpcResponseError) as caught:
        client_for(rpc_replay, jsonrpc_version=version).wallet_call(
            "getwalletinfo", wallet="doesnotexist"
        )
    assert caught.value.code == -18


def test_rpc_errors_are_chain_rpc_errors(rpc_replay: Any) -> None:
    rpc_replay.queue("bitcoind-v30/075_err_unknown_method_v1")
    with pytest.raises(ChainRpcError):
        client_for(rpc_replay).call("nosuchmethod")


def test_decimal_params_are_sent_exactly(rpc_replay: Any) -> None:
    rpc_replay.queue("bitcoind-v30/006_listwallets_empty")
    client_for(rpc_replay).call("sendtoaddress", ["bcrt1qexample", sats_to_amount(1)])
    assert rpc_replay.requests[0].body["params"] == ["bcrt1qexample", "0.00000001"]


# --------------------------------------------------------------------------- other answers


def test_http_403_and_non_json_answers(rpc_replay: Any) -> None:
    forbidden = {"http_status": 403, "response": "", "response_raw": "", "response_headers": {}}
    gateway = {
        "http_status": 502,
        "response": "",
        "response_raw": "<html>Bad Gateway</html>",
        "response_headers": {"Content-Type": "text/html"},
    }
    rpc_replay.transcripts.extend([forbidden, gateway])
    client = client_for(rpc_replay)
    with pytest.raises(ChainRpcAuthError) as denied:
        client.call("stop")
    assert denied.value.http_status == 403
    assert "stop" in str(denied.value)
    with pytest.raises(ChainRpcConnectionError) as bad:
        client.call("getblockcount")
    assert bad.value.http_status == 502
    assert "Bad Gateway" in str(bad.value)


def test_cookie_file_is_read_for_every_call(rpc_replay: Any, tmp_path: Path) -> None:
    cookie = tmp_path / ".cookie"
    cookie.write_text("__cookie__:" + "ab" * 32)
    rpc_replay.queue("bitcoind-v30/006_listwallets_empty", "bitcoind-v30/006_listwallets_empty")
    client = ChainRpcClient(rpc_replay.url, cookie_file=str(cookie))
    assert client.call("listwallets") == []
    cookie.write_text("__cookie__:" + "cd" * 32)
    assert client.call("listwallets") == []
    sent = [r.headers["Authorization"] for r in rpc_replay.requests]
    assert sent == [
        "Basic " + base64.b64encode(("__cookie__:" + part * 32).encode()).decode()
        for part in ("ab", "cd")
    ]


def test_unreadable_or_malformed_cookie(tmp_path: Path) -> None:
    missing = ChainRpcClient("http://127.0.0.1:1", cookie_file=str(tmp_path / "nope"))
    with pytest.raises(ChainRpcConfigError, match="cannot read the RPC cookie file"):
        missing.call("getblockcount")
    bad = tmp_path / ".cookie"
    bad.write_text("no-separator")
    with pytest.raises(ChainRpcConfigError, match="user:password"):
        ChainRpcClient("http://127.0.0.1:1", cookie_file=str(bad)).call("getblockcount")


def test_unreachable_node_is_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ChainRpcClient(f"http://127.0.0.1:{port}", user="u", password=PASSWORD)
    with pytest.raises(ChainRpcConnectionError) as caught:
        client.call("getblockcount")
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": f"http://scnode:{PASSWORD}@127.0.0.1:8332"}, "credentials in the rpc url"),
        ({"url": "ftp://127.0.0.1"}, "must be http"),
        ({"user": "u"}, "go together"),
        ({"user": "u", "password": PASSWORD, "cookie_file": "/x"}, "not both"),
        ({"jsonrpc_version": "1.1"}, "jsonrpc version"),
    ],
)
def test_bad_settings_are_refused_without_echoing_secrets(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ChainRpcConfigError, match=message) as caught:
        ChainRpcClient(**kwargs)
    assert PASSWORD not in str(caught.value)
