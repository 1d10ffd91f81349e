"""Start-up configuration: Core's errors, warnings, and the options a role writes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from simnet.pytest_chain import ChainNode, ChainRPCError


def _run(tmp_path: Path, conf: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "bitcoin.conf").write_text(conf)
    return subprocess.run(
        [sys.executable, "-m", "simnet.chain", f"-datadir={tmp_path}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ("regtest=1\nprune=550\ntxindex=1\n", "Prune mode is incompatible with -txindex."),
        ("regtest=1\nprune=100\n", "Prune configured below the minimum of 550 MiB"),
        ("regtest=1\nrpcauth=alice-no-salt\n", "Error: Invalid -rpcauth argument."),
    ],
)
def test_invalid_config_stops_start_up(tmp_path: Path, conf: str, message: str) -> None:
    result = _run(tmp_path, conf)
    assert result.returncode == 1
    assert message in result.stderr


def test_unknown_command_line_option_is_an_error(tmp_path: Path) -> None:
    result = _run(tmp_path, "regtest=1\n", "-nosuchoption=1")
    assert result.returncode == 1
    assert "Invalid parameter -nosuchoption" in result.stderr


def test_unknown_file_option_and_misplaced_network_option_are_logged(
    start_chain_node: Callable[..., ChainNode],
) -> None:
    node = start_chain_node(frobnicate=1, dbcache=450, assumevalid=0)
    log = (node.netdir / "debug.log").read_text()
    assert "Ignoring unknown configuration value frobnicate" in log
    assert "option -dbcache=450 accepted, not simulated" in log
    assert "SIMULATION" in log


def test_prune_1_manual_pruning(start_chain_node: Callable[..., ChainNode]) -> None:
    node = start_chain_node(prune=1)
    info = node.rpc("getblockchaininfo")
    assert (
        info["pruned"] is True
        and info["automatic_pruning"] is False
        and "prune_target_size" not in info
    )
    with pytest.raises(ChainRPCError) as err:
        node.rpc("pruneblockchain", 10)
    assert (err.value.code, err.value.message) == (-1, "Blockchain is too short for pruning.")
    node.mine(1100)
    last = node.rpc("pruneblockchain", 1000)
    assert last == 1100 - 288
    assert node.rpc("getblockchaininfo")["pruneheight"] == last + 1
    old = node.rpc("getblockhash", 10)
    with pytest.raises(ChainRPCError) as err:
        node.rpc("getblock", old)
    assert (err.value.code, err.value.message) == (-1, "Block not available (pruned data)")
    assert node.rpc("getblockheader", old)["height"] == 10


def test_prune_550_reports_target(start_chain_node: Callable[..., ChainNode]) -> None:
    info = start_chain_node(prune=550).rpc("getblockchaininfo")
    assert info["automatic_pruning"] is True and info["prune_target_size"] == 550 * 1024 * 1024


def test_microcurrency_has_its_own_hrp(start_chain_node: Callable[..., ChainNode]) -> None:
    node = start_chain_node(chain="lakemoney", network="main", args=["--hrp=lm"])
    node.rpc("createwallet", "w")
    assert node.rpc("getnewaddress").startswith("lm1q")
    assert node.rpc("getblockchaininfo")["chain"] == "main"


def test_disablewallet_removes_wallet_methods(start_chain_node: Callable[..., ChainNode]) -> None:
    node = start_chain_node(disablewallet=1)
    with pytest.raises(ChainRPCError) as err:
        node.rpc("createwallet", "w")
    assert err.value.code == -32601
    assert node.rpc("getblockcount") == 0


def test_microcurrency_needs_its_ports(tmp_path: Path) -> None:
    result = _run(tmp_path, "server=1\n", "--coin=lakemoney")
    assert result.returncode == 1
    assert "no default RPC port" in result.stderr
