"""Sweeping paper keys with playbooks/sweep_keys.yml (the key_sweep module) against the simnet
chain stand-in on regtest: keys made at test time, funded through the simulated world, swept
into the node's wallet by a real ansible-playbook run on localhost."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from embit import ec, script
from embit.networks import NETWORKS

from simnet.pytest_chain import ChainNode

REPO = Path(__file__).resolve().parents[3]
BIN = REPO / ".venv" / "bin"
REGTEST = NETWORKS["regtest"]
pytestmark = pytest.mark.skipif(
    not (REPO / "collections" / "ansible_collections" / "satoshiware" / "scnode").exists(),
    reason="the collections/ link is missing: run `make collection-link`",
)


class PaperKey:
    """A private key made at test time, with its addresses on regtest."""

    def __init__(self, mainnet: bool = False) -> None:
        self.key = ec.PrivateKey(secrets.token_bytes(32))
        self.wif = self.key.wif(NETWORKS["main"] if mainnet else REGTEST)
        pub = self.key.get_public_key()
        self.p2wpkh = script.p2wpkh(pub).address(REGTEST)
        self.p2pkh = script.p2pkh(pub).address(REGTEST)
        self.p2sh_p2wpkh = script.p2sh(script.p2wpkh(pub)).address(REGTEST)


def sats(amount: Decimal) -> int:
    return int(amount * 100_000_000)


def trusted(node: ChainNode) -> int:
    return sats(node.rpc("getbalances", wallet="wallet")["mine"]["trusted"])


def node_entry(node: ChainNode) -> dict[str, Any]:
    return {
        "chain": node.coin,
        "rpc_url": f"http://127.0.0.1:{node.rpc_port}",
        "rpc_user": node.user,
        "rpc_password": node.password,
        "wallet": "wallet",
    }


def run_playbook(
    tmp_path: Path, node: ChainNode, keys: list[str], *extra: str, **variables: Any
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook sweep_keys.yml on localhost; the keys go in a 0600 vars file."""
    vars_file = tmp_path / f"vars-{secrets.token_hex(4)}.json"
    vars_file.write_text(
        json.dumps(
            {
                "sweep_keys_wifs": keys,
                "sweep_keys_hosts": "localhost",
                "sweep_keys_become": False,
                "sweep_keys_nodes": [node_entry(node)],
                "ansible_python_interpreter": str(BIN / "python"),
                **variables,
            }
        )
    )
    vars_file.chmod(0o600)
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    return subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            str(REPO / "playbooks" / "sweep_keys.yml"),
            "-e",
            f"@{vars_file}",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def sweep_result(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The key_sweep task's result for the one chain, from the json callback's output."""
    report = json.loads(run.stdout)
    for play in report["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"] == "Sweep the keys on each chain":
                item: dict[str, Any] = task["hosts"]["localhost"]["results"][0]
                return item
    raise AssertionError(f"no sweep task in the output: {run.stdout[-2000:]} {run.stderr}")


@pytest.fixture
def node(start_chain_node: Callable[..., ChainNode]) -> ChainNode:
    """Bitcoin v30 regtest with the node's wallet `wallet` holding mature coins."""
    chain = start_chain_node(coin="bitcoin")
    chain.rpc("createwallet", "wallet")
    chain.mine(101, chain.rpc("getnewaddress", wallet="wallet"))
    return chain


def test_sweep_moves_every_coin_of_the_keys_into_the_wallet(
    node: ChainNode, tmp_path: Path
) -> None:
    first, second = PaperKey(), PaperKey()
    node.pay(first.p2wpkh, 50_000_000)
    node.pay(first.p2pkh, 1_200_000)
    node.pay(second.p2sh_p2wpkh, 3_000_000)
    node.mine(1)
    before = trusted(node)

    run = run_playbook(tmp_path, node, [first.wif, second.wif], sweep_keys_fee_rate=2)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    result = sweep_result(run)
    for key in (first.wif, second.wif):
        assert key not in run.stdout and key not in run.stderr

    assert result["changed"] is True
    assert result["found_sat"] == 54_200_000
    assert sorted(i["type"] for i in result["inputs"]) == ["p2pkh", "p2sh-p2wpkh", "p2wpkh"]
    assert result["amount_sat"] + result["fee_sat"] == 54_200_000
    # the fee is sized on the largest signatures: the real rate is 2 sat/vB or a little more
    assert 2.0 <= result["fee_rate_sat_vb"] < 2.1
    tx = node.rpc("getrawtransaction", result["txid"], True)
    assert result["vsize"] == tx["vsize"]
    assert [sats(o["value"]) for o in tx["vout"]] == [result["amount_sat"]]
    assert tx["vout"][0]["scriptPubKey"]["address"] == result["address"]
    info = node.rpc("getaddressinfo", result["address"], wallet="wallet")
    assert info["ismine"] is True and info["labels"] == ["sweep"]

    # a second run while the sweep waits in the mempool changes nothing
    again = sweep_result(run_playbook(tmp_path, node, [first.wif, second.wif]))
    assert again["changed"] is False and len(again["skipped"]) == 3

    node.mine(1)
    assert trusted(node) == before + result["amount_sat"]
    assert node.rpc("scantxoutset", "start", [f"combo({first.wif})"])["unspents"] == []
    done = sweep_result(run_playbook(tmp_path, node, [first.wif, second.wif]))
    assert done["changed"] is False and done["found_sat"] == 0


def test_check_mode_reports_the_funds_and_sweeps_nothing(node: ChainNode, tmp_path: Path) -> None:
    key = PaperKey()
    node.pay(key.p2wpkh, 7_000_000)
    node.mine(1)
    run = run_playbook(tmp_path, node, [key.wif], "--check", sweep_keys_fee_rate=1)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    result = sweep_result(run)
    assert result["changed"] is True and "txid" not in result
    assert (result["found_sat"], result["fee_sat"], result["amount_sat"]) == (
        7_000_000,
        110,
        6_999_890,
    )
    assert node.rpc("getrawmempool") == []
    assert len(node.rpc("scantxoutset", "start", [f"combo({key.wif})"])["unspents"]) == 1


def test_a_mainnet_key_is_refused_on_the_regtest_node(node: ChainNode, tmp_path: Path) -> None:
    good, mainnet = PaperKey(), PaperKey(mainnet=True)
    run = run_playbook(tmp_path, node, [good.wif, mainnet.wif], sweep_keys_fee_rate=1)
    assert run.returncode != 0
    result = sweep_result(run)
    assert result["failed"] is True
    assert "key #2 is a mainnet key (WIF prefix 0x80)" in result["msg"]
    assert "the node runs the regtest network" in result["msg"]
    assert mainnet.wif not in run.stdout and good.wif not in run.stdout


def test_dust_is_refused_and_the_coin_stays(node: ChainNode, tmp_path: Path) -> None:
    key = PaperKey()
    node.pay(key.p2wpkh, 350)
    node.mine(1)
    run = run_playbook(tmp_path, node, [key.wif], sweep_keys_fee_rate=1)
    assert run.returncode != 0
    result = sweep_result(run)
    assert result["msg"].startswith("dust: the keys hold 350 sat; at 1 sat/vB the fee is 110 sat")
    assert "below the dust limit of 294 sat" in result["msg"]
    assert node.rpc("getrawmempool") == []

    # at a fee rate where spending costs more than the coin holds
    run = run_playbook(tmp_path, node, [key.wif], sweep_keys_fee_rate=6)
    result = sweep_result(run)
    assert result["msg"].startswith("the fee exceeds the value: the keys hold 350 sat")


def test_sweep_on_an_azcoin_v23_node(
    start_chain_node: Callable[..., ChainNode], tmp_path: Path
) -> None:
    """AZCoin speaks v23 (no coinbase fields in scantxoutset, balances in getwalletinfo)."""
    azcoin = start_chain_node(coin="azcoin")
    azcoin.rpc("createwallet", "wallet")
    azcoin.mine(101, azcoin.rpc("getnewaddress", wallet="wallet"))
    key = PaperKey()
    azcoin.pay(key.p2wpkh, 250_000_000)
    azcoin.mine(1)
    before = trusted(azcoin)
    run = run_playbook(tmp_path, azcoin, [key.wif], sweep_keys_fee_rate=1)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    result = sweep_result(run)
    assert result["changed"] is True and result["found_sat"] == 250_000_000
    assert result["amount_sat"] == 250_000_000 - result["fee_sat"]
    azcoin.mine(1)
    assert trusted(azcoin) == before + result["amount_sat"]
