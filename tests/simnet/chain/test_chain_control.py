"""Control API calls not covered elsewhere: restart in place, block timer, fee estimate, IBD."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from simnet.pytest_chain import ChainNode, ChainRPCError


def test_restart_in_place_keeps_pid_and_state(chain_node: ChainNode) -> None:
    chain_node.rpc("createwallet", "w")
    chain_node.mine(3)
    pid = chain_node.control("status", http_method="GET")["pid"]
    chain_node.control("restart", clean=True)
    deadline = time.time() + 20
    status = None
    while time.time() < deadline:
        try:
            status = chain_node.control("status", http_method="GET")
            break
        except OSError:
            time.sleep(0.1)
    assert status is not None and status["pid"] == pid and status["height"] == 3
    assert chain_node.rpc("listwallets") == ["w"]


def test_block_timer_fee_estimate_and_ibd(chain_node: ChainNode) -> None:
    assert chain_node.rpc("getblockchaininfo")["initialblockdownload"] is True
    chain_node.control("block_interval", seconds=0.2)
    deadline = time.time() + 10
    while chain_node.rpc("getblockcount") < 3 and time.time() < deadline:
        time.sleep(0.1)
    chain_node.control("block_interval", seconds=None)
    assert chain_node.rpc("getblockcount") >= 3
    assert chain_node.rpc("getblockchaininfo")["initialblockdownload"] is False
    chain_node.control("ibd", active=True)
    assert chain_node.rpc("getblockchaininfo")["initialblockdownload"] is True
    assert "errors" in chain_node.rpc("estimatesmartfee", 6)
    chain_node.control("fee_estimate", sat_per_vb=12)
    assert chain_node.rpc("estimatesmartfee", 6)["feerate"] == Decimal("0.00012")


def test_pay_rejects_foreign_double_spend(chain_node: ChainNode) -> None:
    chain_node.rpc("createwallet", "w")
    address = chain_node.rpc("getnewaddress")
    chain_node.rpc("generatetoaddress", 101, address)
    own = chain_node.rpc("sendtoaddress", address, 1)
    with pytest.raises(ChainRPCError):
        chain_node.control("double_spend", txid=own)  # not a payment of the simulated world


def test_a_payment_reorged_out_with_drop_txs_can_still_be_double_spent(
    chain_node: ChainNode,
) -> None:
    """A real node keeps a dropped payment in its mempool and the real layer's funder re-spends
    its inputs (tests/daemons.py); the stand-in drops it from the mempool, and re-spends its
    still-unspent inputs the same way (found writing the reorg-before-N deposit test)."""
    chain_node.rpc("createwallet", "w")
    address = chain_node.rpc("getnewaddress")
    txid = chain_node.pay(address, 70_000)
    chain_node.mine(2)
    chain_node.reorg(2, drop_txs=True)
    assert chain_node.rpc("gettransaction", txid)["confirmations"] == 0
    replaced = chain_node.control("double_spend", txid=txid, mine=True)
    assert replaced["replaced"] == txid
    assert chain_node.rpc("getblock", replaced["block"])["tx"][1:] == [replaced["txid"]]
    assert chain_node.rpc("gettransaction", txid)["confirmations"] == -1
    assert chain_node.rpc("getreceivedbyaddress", address, 0) == 0
    with pytest.raises(ChainRPCError, match="not in the mempool"):
        chain_node.control("double_spend", txid=txid)  # its inputs are spent now


def test_coinbase_outputs_pay_a_pool_payout_that_matures(chain_node: ChainNode) -> None:
    chain_node.rpc("createwallet", "w")
    payout = chain_node.rpc("getnewaddress", "pool")
    result = chain_node.control(
        "mine", blocks=2, coinbase_outputs=[{"address": payout, "sats": 123_456_789}]
    )
    assert len(result["coinbase_txids"]) == 2
    assert chain_node.rpc("getbalances")["mine"]["immature"] == Decimal("2.46913578")
    tx = chain_node.rpc("gettransaction", result["coinbase_txids"][0])
    assert tx["details"][0]["category"] == "immature"
    chain_node.mine(99)
    assert chain_node.rpc("getbalances")["mine"]["trusted"] == Decimal("1.23456789")
    with pytest.raises(ChainRPCError):
        chain_node.control("mine", coinbase_outputs=[{"address": payout, "sats": 10**12}])
