"""simnet.cli behaves like bitcoin-cli against the stand-in."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from simnet.pytest_chain import ChainNode


def _cli(node: ChainNode, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simnet.cli", f"-datadir={node.datadir}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_cli_with_cookie_and_conf(chain_node: ChainNode) -> None:
    result = _cli(chain_node, "getblockcount")
    assert (result.returncode, result.stdout) == (0, "0\n")
    _cli(chain_node, "createwallet", "w")
    address = _cli(
        chain_node, "-rpcwallet=w", "-named", "getnewaddress", "label=123"
    ).stdout.strip()
    assert address.startswith("bcrt1")
    assert chain_node.rpc("getaddressesbylabel", "123") == {address: {"purpose": "receive"}}
    result = _cli(chain_node, "generatetoaddress", "101", address)
    assert len(json.loads(result.stdout)) == 101
    balances = _cli(chain_node, "-rpcwallet=w", "getbalances").stdout
    assert '"trusted": 50.00000000' in balances


def test_cli_error_exit_status(chain_node: ChainNode) -> None:
    result = _cli(chain_node, "getblockhash", "5")
    assert result.returncode == 8
    assert result.stderr == "error code: -8\nerror message:\nBlock height out of range\n"
    result = _cli(chain_node, "stop")
    assert result.stdout == "Bitcoin Core stopping\n"


def test_launcher_environment_sets_coin_and_release(tmp_path: object) -> None:
    """simnet.mirror's launchers export SIMNET_PROGRAM and SIMNET_RELEASE_VERSION."""
    import os

    env = {**os.environ, "SIMNET_PROGRAM": "azcoind", "SIMNET_RELEASE_VERSION": "0.2.2"}
    daemon = subprocess.run(
        [sys.executable, "-m", "simnet.chain", "-version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )
    assert daemon.stdout.startswith("AZCoin daemon version v0.2.2")
    env = {**os.environ, "SIMNET_PROGRAM": "bitcoin-cli", "SIMNET_RELEASE_VERSION": "30.2"}
    cli = subprocess.run(
        [sys.executable, "-m", "simnet.cli", "-version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )
    assert cli.stdout.startswith("Bitcoin Core RPC client version v30.2.0")


def test_getnetworkinfo_reports_the_release(
    start_chain_node: Callable[..., ChainNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIMNET_RELEASE_VERSION", "30.2")
    info = start_chain_node().rpc("getnetworkinfo")
    assert info["version"] == 300200
    assert info["subversion"] == "/Satoshi:30.2.0(simnet SIMULATION)/"
