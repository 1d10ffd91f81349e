"""Wallet behaviour a user notices: addresses, maturity, confirmations, sends, sweeps, restarts."""

from __future__ import annotations

import os
from collections.abc import Callable
from decimal import Decimal

import pytest
from bitcoin.core import CTransaction
from bitcoin.core.key import CPubKey
from bitcoin.core.script import SIGVERSION_WITNESS_V0, CScript, SignatureHash

from simnet.chain.crypto import (
    hash160,
    p2pkh_script,
    p2sh_script,
    p2wpkh_script,
    pubkey_of,
    script_address,
    segwit_address,
    wif_encode,
)
from simnet.pytest_chain import ChainNode, ChainRPCError


def _funded(node: ChainNode) -> str:
    node.rpc("createwallet", "w")
    address = node.rpc("getnewaddress", "user:1")
    node.rpc("generatetoaddress", 101, address)
    return str(address)


def test_coinbase_matures_after_100_blocks(chain_node: ChainNode) -> None:
    chain_node.rpc("createwallet", "w")
    address = chain_node.rpc("getnewaddress")
    assert address.startswith("bcrt1q")
    chain_node.rpc("generatetoaddress", 100, address)
    assert chain_node.rpc("getbalances")["mine"]["trusted"] == 0
    assert chain_node.rpc("getbalances")["mine"]["immature"] == 5000
    chain_node.rpc("generatetoaddress", 1, address)
    assert chain_node.rpc("getbalances")["mine"]["trusted"] == 50
    info = chain_node.rpc("getaddressinfo", address)
    assert info["ismine"] and info["desc"].startswith("wpkh([")


def test_send_pays_fee_from_fee_rate_with_change_and_confirms(chain_node: ChainNode) -> None:
    _funded(chain_node)
    dest = segwit_address("bcrt", p2wpkh_script(pubkey_of(os.urandom(32))))
    txid = chain_node.rpc("sendtoaddress", address=dest, amount=Decimal("1.5"), fee_rate=10)
    tx = chain_node.rpc("gettransaction", txid)
    assert tx["confirmations"] == 0 and tx["amount"] == Decimal("-1.5")
    raw = chain_node.rpc("decoderawtransaction", tx["hex"])
    assert -tx["fee"] * 100_000_000 == 10 * raw["vsize"]
    values = sorted(o["value"] for o in raw["vout"])
    assert values == sorted([Decimal("1.5"), 50 - Decimal("1.5") + tx["fee"]])  # change back
    assert txid in chain_node.rpc("getrawmempool")
    chain_node.mine(2)
    assert chain_node.rpc("gettransaction", txid)["confirmations"] == 2
    # two more coinbases (heights 2, 3) matured meanwhile
    assert chain_node.rpc("getbalances")["mine"]["trusted"] == 150 - Decimal("1.5") + tx["fee"]


def test_insufficient_funds_codes(chain_node: ChainNode) -> None:
    _funded(chain_node)
    dest = segwit_address("bcrt", p2wpkh_script(pubkey_of(os.urandom(32))))
    with pytest.raises(ChainRPCError) as err:
        chain_node.rpc("sendtoaddress", dest, 1000)
    assert (err.value.code, err.value.message) == (-6, "Insufficient funds")
    with pytest.raises(ChainRPCError) as err:
        chain_node.rpc("send", [{dest: 1000}])
    assert err.value.code == -4


def test_signatures_verify_with_python_bitcoinlib(chain_node: ChainNode) -> None:
    _funded(chain_node)
    dest = segwit_address("bcrt", p2wpkh_script(pubkey_of(os.urandom(32))))
    txid = chain_node.rpc("sendtoaddress", dest, 1)
    tx = CTransaction.deserialize(bytes.fromhex(chain_node.rpc("getrawtransaction", txid)))
    prev = chain_node.rpc(
        "getrawtransaction",
        tx.vin[0].prevout.hash[::-1].hex(),
        True,
        chain_node.rpc("getblockhash", 1),
    )
    value = int(prev["vout"][0]["value"] * 100_000_000)
    sig, pub = tx.wit.vtxinwit[0].scriptWitness.stack
    digest = SignatureHash(
        CScript(p2pkh_script(hash160(pub))), tx, 0, sig[-1], value, SIGVERSION_WITNESS_V0
    )
    assert CPubKey(pub).verify(digest, sig[:-1])


def test_sweep_foreign_key_with_scantxoutset_and_signrawtransactionwithkey(
    chain_node: ChainNode,
) -> None:
    _funded(chain_node)
    secret = os.urandom(32)
    wif = wif_encode(secret, mainnet=False)
    foreign = segwit_address("bcrt", p2wpkh_script(pubkey_of(secret)))
    chain_node.rpc("sendtoaddress", foreign, 2)
    chain_node.mine(1)
    scan = chain_node.rpc("scantxoutset", "start", [f"combo({wif})"])
    assert scan["success"] and scan["total_amount"] == 2
    utxo = scan["unspents"][0]
    mine = chain_node.rpc("getnewaddress")
    raw = chain_node.rpc(
        "createrawtransaction",
        [{"txid": utxo["txid"], "vout": utxo["vout"]}],
        [{mine: Decimal("1.9999")}],
    )
    signed = chain_node.rpc("signrawtransactionwithkey", raw, [wif])
    assert signed["complete"] is True
    assert chain_node.rpc("testmempoolaccept", [signed["hex"]])[0]["allowed"] is True
    txid = chain_node.rpc("sendrawtransaction", signed["hex"])
    assert chain_node.rpc("gettransaction", txid)["amount"] == Decimal("1.9999")
    chain_node.mine(1)
    assert chain_node.rpc("scantxoutset", "start", [f"combo({wif})"])["unspents"] == []
    with pytest.raises(ChainRPCError) as err:
        chain_node.rpc("sendrawtransaction", signed["hex"])
    assert err.value.code == -27


def test_signrawtransactionwithkey_wants_the_redeemscript_of_a_p2sh_prevout(
    chain_node: ChainNode,
) -> None:
    """As Core's ParsePrevouts with keys given (found by running the sweep on a real node):
    a P2SH prevout without redeemScript/witnessScript is -8, a wrong one is -8 too."""
    _funded(chain_node)
    secret = os.urandom(32)
    wif = wif_encode(secret, mainnet=False)
    redeem = p2wpkh_script(pubkey_of(secret))
    address = script_address(p2sh_script(hash160(redeem)), "bcrt", 0x6F, 0xC4)
    chain_node.rpc("sendtoaddress", address, 1)
    chain_node.mine(1)
    utxo = chain_node.rpc("scantxoutset", "start", [f"combo({wif})"])["unspents"][0]
    raw = chain_node.rpc(
        "createrawtransaction",
        [{"txid": utxo["txid"], "vout": utxo["vout"]}],
        [{chain_node.rpc("getnewaddress"): Decimal("0.9999")}],
    )
    prevout = {
        "txid": utxo["txid"],
        "vout": utxo["vout"],
        "scriptPubKey": utxo["scriptPubKey"],
        "amount": utxo["amount"],
    }
    for extra, message in (
        ({}, "Missing redeemScript/witnessScript"),
        ({"redeemScript": "0014" + "00" * 20}, "redeemScript does not match scriptPubKey"),
    ):
        with pytest.raises(ChainRPCError) as err:
            chain_node.rpc("signrawtransactionwithkey", raw, [wif], [prevout | extra])
        assert (err.value.code, err.value.message) == (-8, message)
    signed = chain_node.rpc(
        "signrawtransactionwithkey", raw, [wif], [prevout | {"redeemScript": redeem.hex()}]
    )
    assert signed["complete"] is True
    assert chain_node.rpc("testmempoolaccept", [signed["hex"]])[0]["allowed"] is True


def test_labels_and_received(chain_node: ChainNode) -> None:
    chain_node.rpc("createwallet", "w")
    deposit = chain_node.rpc("getnewaddress", "member:7")
    assert chain_node.rpc("getaddressesbylabel", "member:7") == {deposit: {"purpose": "receive"}}
    assert chain_node.rpc("listlabels") == ["member:7"]
    txid = chain_node.pay(deposit, 25_000)
    assert chain_node.rpc("getreceivedbyaddress", deposit, 0) == Decimal("0.00025")
    assert chain_node.rpc("getreceivedbylabel", "member:7") == 0  # minconf 1
    entry = next(t for t in chain_node.rpc("listtransactions") if t["txid"] == txid)
    assert (
        entry["category"] == "receive"
        and entry["label"] == "member:7"
        and entry["confirmations"] == 0
    )
    chain_node.mine(1)
    assert chain_node.rpc("getreceivedbylabel", "member:7") == Decimal("0.00025")
    since = chain_node.rpc(
        "listsinceblock", chain_node.rpc("getblockhash", chain_node.rpc("getblockcount") - 1)
    )
    assert [t["txid"] for t in since["transactions"]] == [txid]


def test_restart_keeps_chain_wallets_and_mempool(chain_node: ChainNode) -> None:
    address = _funded(chain_node)
    pending = chain_node.pay(address, 10_000)
    tip = chain_node.rpc("getbestblockhash")
    assert chain_node.stop() == 0
    chain_node.start()
    assert chain_node.rpc("getbestblockhash") == tip
    assert chain_node.rpc("listwallets") == ["w"]
    assert pending in chain_node.rpc("getrawmempool")
    assert chain_node.rpc("getbalances")["mine"]["untrusted_pending"] == Decimal("0.0001")


def test_crash_keeps_what_was_answered(chain_node: ChainNode) -> None:
    _funded(chain_node)
    height = chain_node.rpc("getblockcount")
    assert chain_node.crash() == 137
    assert (chain_node.netdir / ".cookie").exists()  # no clean shutdown
    chain_node.start()
    assert chain_node.rpc("getblockcount") == height


def test_backup_restore_on_a_second_node_sharing_the_chain(
    start_chain_node: Callable[..., ChainNode], tmp_path: object
) -> None:
    first = start_chain_node()
    address = _funded(first)
    backup = first.datadir / "backup.dat"
    first.rpc("backupwallet", str(backup))
    second = start_chain_node(addnode=f"127.0.0.1:{first.p2p_port}")
    import time

    deadline = time.time() + 15
    while second.rpc("getblockcount") < 101 and time.time() < deadline:
        time.sleep(0.1)
    assert second.rpc("getbestblockhash") == first.rpc("getbestblockhash")
    second.rpc("restorewallet", "restored", str(backup))
    assert second.rpc("getbalances", wallet="restored")["mine"]["trusted"] == 50
    assert address in second.rpc("getaddressesbylabel", "user:1", wallet="restored")
    # A block mined on the second node reaches the first.
    new = second.mine(1)[0]
    deadline = time.time() + 15
    while first.rpc("getbestblockhash") != new and time.time() < deadline:
        time.sleep(0.1)
    assert first.rpc("getbestblockhash") == new


def test_multiple_wallets_need_the_wallet_path(chain_node: ChainNode) -> None:
    chain_node.rpc("createwallet", "a")
    chain_node.rpc("createwallet", "b")
    with pytest.raises(ChainRPCError) as err:
        chain_node.rpc("getwalletinfo")
    assert err.value.code == -19
    assert chain_node.rpc("getwalletinfo", wallet="b")["walletname"] == "b"
    with pytest.raises(ChainRPCError) as err:
        chain_node.rpc("createwallet", "a")
    assert err.value.code == -4


def test_send_comments_are_kept_like_core_mapvalue(chain_node: ChainNode) -> None:
    _funded(chain_node)
    dest = segwit_address("bcrt", p2wpkh_script(pubkey_of(os.urandom(32))))
    txid = chain_node.rpc("sendtoaddress", dest, 1, "withdrawal-7", "alice")
    tx = chain_node.rpc("gettransaction", txid)
    assert (tx["comment"], tx["to"]) == ("withdrawal-7", "alice")
    sends = [t for t in chain_node.rpc("listtransactions") if t["category"] == "send"]
    assert sends[0]["comment"] == "withdrawal-7"
