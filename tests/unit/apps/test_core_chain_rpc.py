"""The apps' chain RPC client against responses recorded from real Bitcoin Core and AZCoin."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web

from scnode_core.chain_rpc import (
    ChainAuthError,
    ChainRpcClient,
    ChainRpcError,
    ChainUnavailableError,
    ChainWarmingUpError,
    RpcEndpoint,
    from_sats,
    to_sats,
)
from tests.upstream_fixtures import FIXTURES

ENDPOINT = RpcEndpoint("http://127.0.0.1:18443", "satoshi", "pw-never-shown")


def _fixture(chain_dir: str, name: str) -> dict[str, Any]:
    path = FIXTURES / chain_dir / name
    if not path.exists():
        pytest.skip(f"fixture {path} not present (shared fixtures are outside the repo)")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@dataclass
class Seen:
    path: str
    body: bytes


async def _call(
    fixture: dict[str, Any], method: str, *params: Any, wallet: str | None = None
) -> tuple[Any, list[Seen]]:
    """Serve the recorded response from a real HTTP server on loopback and call it."""
    seen: list[Seen] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(Seen(request.path, await request.read()))
        headers = {
            k: v
            for k, v in fixture["response_headers"].items()
            if k not in ("Content-Length", "Content-Type")
        }
        content_type = fixture["response_headers"].get("Content-Type", "application/json")
        return web.Response(
            status=fixture["http_status"],
            body=fixture["response_raw"].encode(),
            headers={**headers, "Content-Type": content_type},
        )

    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    endpoint = RpcEndpoint(f"http://127.0.0.1:{port}", ENDPOINT.user, ENDPOINT.password)
    try:
        async with ChainRpcClient(endpoint) as client:
            return await client.call(method, *params, wallet=wallet), seen
    finally:
        await runner.cleanup()


@pytest.mark.anyio
async def test_success_keeps_amounts_exact() -> None:
    fixture = _fixture("bitcoind-v30", "019_getbalances.json")
    result, seen = await _call(fixture, "getbalances", wallet="wallet")
    trusted = result["mine"]["trusted"]
    assert isinstance(trusted, Decimal)
    assert to_sats(trusted) == int(Decimal(str(trusted)) * 100_000_000)
    assert seen[0].path == "/wallet/wallet"
    body = json.loads(seen[0].body)
    assert body["method"] == "getbalances"
    assert body["jsonrpc"] == "1.0"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("chain_dir", "name", "code"),
    [
        ("bitcoind-v30", "081_err_sendtoaddress_insufficient_funds.json", -6),
        ("bitcoind-v30", "077_err_unknown_method_noversion.json", -32601),
        ("bitcoind-v30", "076_err_unknown_method_v2.json", -32601),
        ("bitcoind-v30", "065_err_getwalletinfo_root_multiple_wallets.json", -19),
        ("azcoind-v23", "026_err_sendtoaddress_insufficient_funds.json", -6),
        ("azcoind-v23", "023_err_unknown_method_v1.json", -32601),
    ],
)
async def test_errors_in_both_response_styles_carry_the_code(
    chain_dir: str, name: str, code: int
) -> None:
    fixture = _fixture(chain_dir, name)
    with pytest.raises(ChainRpcError) as caught:
        await _call(fixture, fixture["method"])
    assert caught.value.code == code


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("chain_dir", "name"),
    [
        ("bitcoind-v30", "074_err_no_auth_header.json"),
        ("azcoind-v23", "022_err_wrong_password.json"),
    ],
)
async def test_refused_login_is_an_auth_error_without_the_password(
    chain_dir: str, name: str
) -> None:
    with pytest.raises(ChainAuthError) as caught:
        await _call(_fixture(chain_dir, name), "getblockchaininfo")
    assert "pw-never-shown" not in str(caught.value)
    assert "pw-never-shown" not in repr(ENDPOINT)


@pytest.mark.anyio
async def test_warming_up_is_its_own_exception() -> None:
    fixture = {
        "http_status": 500,
        "response_headers": {"Content-Type": "application/json"},
        "response_raw": '{"result":null,"error":{"code":-28,"message":"Loading block index…"},'
        '"id":1}\n',
    }
    with pytest.raises(ChainWarmingUpError, match="Loading block index"):
        await _call(fixture, "getblockcount")


@pytest.mark.anyio
async def test_unreachable_daemon_is_unavailable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = RpcEndpoint(f"http://127.0.0.1:{port}", "satoshi", "pw-never-shown")
    async with ChainRpcClient(endpoint) as client:
        with pytest.raises(ChainUnavailableError, match="cannot reach") as caught:
            await client.call("getblockcount")
    assert "pw-never-shown" not in str(caught.value)


@pytest.mark.anyio
async def test_amount_parameters_are_sent_exactly() -> None:
    fixture = _fixture("bitcoind-v30", "027_sendtoaddress.json")
    _, seen = await _call(fixture, "sendtoaddress", "bcrt1qxyz", from_sats(123_456_789))
    assert b'"1.23456789"' in seen[0].body


def test_sats_conversion_refuses_fractions_of_a_sat() -> None:
    assert to_sats(Decimal("0.00000001")) == 1
    assert to_sats(Decimal("21000000")) == 2_100_000_000_000_000
    with pytest.raises(ValueError, match="8 decimals"):
        to_sats(Decimal("0.000000001"))
    assert from_sats(1) == Decimal("0.00000001")
