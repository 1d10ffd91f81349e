"""What the real azcoind 0.2.0 (Bitcoin Core v23.0 code) answered where the stand-in's v23
emulation differed — found by tests/simnet/chain/test_real_vs_stand_in.py against a real build,
fixed in the stand-in; each v30 answer stays as it was."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from simnet.chain.config import ConfigError, load_options
from simnet.pytest_chain import ChainNode, ChainRPCError


def _error(
    node: ChainNode, method: str, *params: object, wallet: str | None = None
) -> tuple[int, str]:
    with pytest.raises(ChainRPCError) as err:
        node.rpc(method, *params, wallet=wallet)
    return err.value.code, err.value.message


def test_v23_refuses_a_network_only_option_outside_its_section_v30_warns(
    tmp_path: Path,
) -> None:
    message = (
        "Config setting for -connect only applied on regtest network when in [regtest] section."
    )
    for coin in ("azcoin", "bitcoin"):
        (tmp_path / f"{coin}.conf").write_text("regtest=1\nconnect=0\n")
    with pytest.raises(ConfigError, match=re.escape(f"Error: {message}")):
        load_options([f"-datadir={tmp_path}", "--coin=azcoin"])
    options, _ = load_options([f"-datadir={tmp_path}", "--coin=bitcoin"])
    assert options.warnings == [f"Warning: {message}"]
    daemon = subprocess.run(
        [sys.executable, "-m", "simnet.chain", f"-datadir={tmp_path}", "--coin=azcoin"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (daemon.returncode, daemon.stderr.strip()) == (1, f"Error: {message}")


def test_v23_wallet_answers(start_chain_node: Callable[..., ChainNode]) -> None:
    node = start_chain_node(chain="azcoin")
    node.rpc("createwallet", "w")
    code, message = _error(node, "loadwallet", "w")
    assert (code, message) == (
        -4,
        "Wallet file verification failed. SQLiteDatabase: Unable to obtain an exclusive lock on "
        "the database, is it being used by another instance of AZCoin Core?\n",
    )
    assert _error(node, "getaddressinfo", "notanaddress", wallet="w") == (
        -5,
        "Invalid checksum or length of Base58 address",
    )
    node.rpc("createwallet", "second")
    assert _error(node, "getnewaddress") == (
        -19,
        "Wallet file not specified (must request wallet RPC through /wallet/<filename> uri-path).",
    )
    assert "fullrbf" not in node.rpc("getmempoolinfo")
    assert "incrementalrelayfee" not in node.rpc("getmempoolinfo")
    assert node.rpc("stop") == "AZCoin Core stopping"


def test_v30_wallet_answers_unchanged(chain_node: ChainNode) -> None:
    chain_node.rpc("createwallet", "w")
    assert _error(chain_node, "loadwallet", "w") == (-35, 'Wallet "w" is already loaded.')
    assert _error(chain_node, "getaddressinfo", "notanaddress", wallet="w")[1] == (
        "Invalid checksum or length of Base58 address (P2PKH or P2SH)"
    )
    chain_node.rpc("createwallet", "second")
    assert _error(chain_node, "getnewaddress")[1].startswith("Multiple wallets are loaded.")
    info = chain_node.rpc("getmempoolinfo")
    assert info["fullrbf"] is True and "incrementalrelayfee" in info
    assert chain_node.rpc("stop") == "Bitcoin Core stopping"


def test_amounts_above_the_coins_max_money_are_out_of_range(
    start_chain_node: Callable[..., ChainNode],
) -> None:
    """AZCoin's MAX_MONEY is its supply cap (7,884,000 AZC), Bitcoin's 21,000,000 BTC: above it
    an amount is -3 "Amount out of range", below it an unaffordable send is -6."""
    for chain, cap in (("azcoin", 7_884_000), ("bitcoin", 21_000_000)):
        node = start_chain_node(chain=chain)
        node.rpc("createwallet", "w")
        to = node.rpc("getnewaddress", wallet="w")
        assert _error(node, "sendtoaddress", to, f"{cap}.00000001", wallet="w") == (
            -3,
            "Amount out of range",
        )
        assert _error(node, "sendtoaddress", to, str(cap), wallet="w")[0] == -6
