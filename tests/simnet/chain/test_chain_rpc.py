"""The JSON-RPC transport of the chain stand-in: auth, statuses, JSON-RPC 1.x/2.0, errors."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import pytest

from simnet.pytest_chain import ChainNode, ChainRPCError


def _call(node: ChainNode, payload: object, **kw: object) -> tuple[int, dict[str, str], bytes]:
    return node.raw_request(json.dumps(payload).encode(), **kw)  # type: ignore[arg-type]


def test_wrong_password_is_401_after_a_delay_with_empty_body(chain_node: ChainNode) -> None:
    started = time.monotonic()
    status, headers, body = _call(
        chain_node, {"method": "getblockcount", "id": 1}, auth=(chain_node.user, "nope")
    )
    assert status == 401
    assert body == b""
    assert headers["WWW-Authenticate"] == 'Basic realm="jsonrpc"'
    assert time.monotonic() - started >= 0.25


def test_missing_auth_is_401_and_get_is_405(chain_node: ChainNode) -> None:
    status, _, body = _call(chain_node, {"method": "getblockcount", "id": 1}, auth=("", ""))
    assert (status, body) == (401, b"")
    status, _, body = chain_node.raw_request(b"", method="GET")
    assert status == 405
    assert body == b"JSONRPC server handles only POST requests"


def test_cookie_file_authenticates_and_is_removed_on_clean_shutdown(chain_node: ChainNode) -> None:
    cookie = chain_node.netdir / ".cookie"
    text = cookie.read_text()
    assert (
        text.startswith("__cookie__:") and len(text.split(":")[1]) == 64 and not text.endswith("\n")
    )
    user, password = text.split(":", 1)
    status, _, body = _call(chain_node, {"method": "getblockcount", "id": 1}, auth=(user, password))
    assert status == 200 and json.loads(body)["result"] == 0
    assert chain_node.stop() == 0
    assert not cookie.exists()


def test_jsonrpc_1_and_2_statuses(chain_node: ChainNode) -> None:
    status, _, body = _call(chain_node, {"method": "nosuchmethod", "id": 7})
    assert status == 404
    assert json.loads(body) == {
        "result": None,
        "error": {"code": -32601, "message": "Method not found"},
        "id": 7,
    }
    status, _, body = _call(chain_node, {"jsonrpc": "2.0", "method": "nosuchmethod", "id": 8})
    assert status == 200
    assert json.loads(body) == {
        "jsonrpc": "2.0",
        "error": {"code": -32601, "message": "Method not found"},
        "id": 8,
    }
    status, _, body = _call(chain_node, {"jsonrpc": "2.0", "method": "getblockcount"})
    assert (status, body) == (204, b"")
    status, _, body = _call(chain_node, {"method": "getblockhash", "params": [99], "id": 1})
    assert status == 500 and json.loads(body)["error"]["code"] == -8
    status, _, body = chain_node.raw_request(b"{not json")
    assert status == 500 and json.loads(body)["error"]["code"] == -32700


def test_batch_named_params_and_param_errors(chain_node: ChainNode) -> None:
    status, _, body = _call(
        chain_node,
        [
            {"id": 1, "method": "getblockcount"},
            {"jsonrpc": "2.0", "id": 2, "method": "getblockhash", "params": {"height": 0}},
            {"jsonrpc": "2.0", "method": "getblockcount"},
        ],
    )
    replies = json.loads(body)
    assert status == 200
    assert replies[0] == {"result": 0, "error": None, "id": 1}
    assert replies[1]["result"] == chain_node.rpc("getbestblockhash")
    assert len(replies) == 2  # the notification gets no reply
    with pytest.raises(ChainRPCError) as err:
        chain_node.rpc("getblockhash")
    assert err.value.code == -1 and err.value.message.startswith("getblockhash height")
    with pytest.raises(ChainRPCError) as err:
        chain_node.rpc("getblockhash", "abc")
    assert err.value.code == -3 and "Position 1 (height)" in err.value.message
    with pytest.raises(ChainRPCError) as err:
        chain_node.rpc("getblockhash", foo=1)
    assert err.value.code == -8


def test_azcoin_v23_speaks_only_jsonrpc_1(start_chain_node: Callable[..., ChainNode]) -> None:
    node = start_chain_node(chain="azcoin")
    status, _, body = _call(node, {"jsonrpc": "2.0", "method": "nosuchmethod", "id": 1})
    assert status == 404 and json.loads(body)["result"] is None
    info = node.rpc("getblockchaininfo")
    assert info["warnings"] == "" and "target" not in info
    assert "SIMULATION" in node.rpc("getnetworkinfo")["subversion"]


def test_rpcauth_user_and_password_user(start_chain_node: Callable[..., ChainNode]) -> None:
    node = start_chain_node(rpcuser="alice", rpcpassword="s3cret-at-test-time")
    status, _, _ = _call(
        node, {"method": "getblockcount", "id": 1}, auth=("alice", "s3cret-at-test-time")
    )
    assert status == 200
    assert not (node.netdir / ".cookie").exists()  # no cookie when rpcpassword is set
    assert node.rpc("getblockcount") == 0  # the rpcauth user works too


def test_warmup_fail_next_and_stall(chain_node: ChainNode) -> None:
    chain_node.warmup("Verifying blocks…")
    with pytest.raises(ChainRPCError) as err:
        chain_node.rpc("nosuchmethod")
    assert (err.value.code, err.value.message) == (-28, "Verifying blocks…")
    chain_node.warmup(None)
    chain_node.fail_next(-1, "disk full", method="getblockcount")
    assert chain_node.rpc("getbestblockhash")  # other methods unaffected
    with pytest.raises(ChainRPCError) as err:
        chain_node.rpc("getblockcount")
    assert err.value.message == "disk full"
    assert chain_node.rpc("getblockcount") == 0
    chain_node.stall(0.6, method="getblockcount")
    started = time.monotonic()
    chain_node.rpc("getblockcount")
    assert time.monotonic() - started >= 0.6


def test_python_bitcoinlib_proxy_works_unchanged(chain_node: ChainNode) -> None:
    import bitcoin
    import bitcoin.rpc

    bitcoin.SelectParams("regtest")
    proxy = bitcoin.rpc.Proxy(
        service_url=f"http://{chain_node.user}:{chain_node.password}@127.0.0.1:{chain_node.rpc_port}"
    )
    chain_node.rpc("createwallet", "w")
    address = chain_node.rpc("getnewaddress")
    proxy.call("generatetoaddress", 101, address)
    assert proxy.getblockcount() == 101
    block = proxy.getblock(proxy.getblockhash(1))
    assert block.vtx[0].is_coinbase()
    assert proxy.getbalance() == 50 * 100_000_000  # python-bitcoinlib converts to sats
    _ = base64


def test_rpcwhitelist_refuses_other_methods_and_other_users(
    start_chain_node: Callable[..., ChainNode],
) -> None:
    node = start_chain_node(rpcwhitelist="simnet-test:getblockcount,getbestblockhash")
    assert node.rpc("getblockcount") == 0
    status, _, body = _call(node, {"method": "stop", "id": 1})
    assert (status, body) == (403, b"")
    cookie_user, cookie_password = (node.netdir / ".cookie").read_text().split(":", 1)
    status, _, _ = _call(
        node, {"method": "getblockcount", "id": 1}, auth=(cookie_user, cookie_password)
    )
    assert status == 403  # no whitelist of its own: rpcwhitelistdefault applies
