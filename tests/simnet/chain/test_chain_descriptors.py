"""Descriptors: importdescriptors (watch-only xpub, WIF keys), generateblock, sendmany."""

from __future__ import annotations

import os
from decimal import Decimal

from simnet.chain.crypto import p2wpkh_script, pubkey_of, segwit_address, wif_encode
from simnet.pytest_chain import ChainNode


def test_watch_only_wallet_follows_an_xpub(chain_node: ChainNode) -> None:
    chain_node.rpc("createwallet", "hot")
    public = next(
        d["desc"]
        for d in chain_node.rpc("listdescriptors", wallet="hot")["descriptors"]
        if not d["internal"]
    )
    assert "tpub" in public and "#" in public
    chain_node.rpc("createwallet", wallet_name="watch", disable_private_keys=True)
    missing = chain_node.rpc(
        "importdescriptors", [{"desc": public.split("#")[0], "timestamp": "now"}], wallet="watch"
    )
    assert missing[0]["success"] is False and missing[0]["error"]["code"] == -5  # needs checksum
    result = chain_node.rpc(
        "importdescriptors",
        [{"desc": public, "timestamp": "now", "range": [0, 30]}],
        wallet="watch",
    )
    assert result == [{"success": True}]
    address = chain_node.rpc("getnewaddress", wallet="hot")
    info = chain_node.rpc("getaddressinfo", address, wallet="watch")
    assert info["iswatchonly"] is True and info["ismine"] is False
    txid = chain_node.pay(address, 40_000)
    chain_node.mine(1)
    assert chain_node.rpc("gettransaction", txid, wallet="watch")["amount"] == Decimal("0.0004")
    assert chain_node.rpc("getbalances", wallet="watch")["mine"]["trusted"] == Decimal("0.0004")


def test_imported_wif_key_can_be_spent(chain_node: ChainNode) -> None:
    secret = os.urandom(32)
    wif = wif_encode(secret, mainnet=False)
    address = segwit_address("bcrt", p2wpkh_script(pubkey_of(secret)))
    assert address is not None
    chain_node.rpc("createwallet", "w")
    info = chain_node.rpc("getdescriptorinfo", f"wpkh({wif})")
    assert info["hasprivatekeys"] is True and info["isrange"] is False
    desc = f"wpkh({wif})#{info['checksum']}"
    assert chain_node.rpc("importdescriptors", [{"desc": desc, "timestamp": 0}]) == [
        {"success": True}
    ]
    assert chain_node.rpc("deriveaddresses", info["descriptor"]) == [address]
    chain_node.pay(address, 300_000)
    chain_node.mine(1)
    dest = segwit_address("bcrt", p2wpkh_script(pubkey_of(os.urandom(32))))
    other = segwit_address("bcrt", p2wpkh_script(pubkey_of(os.urandom(32))))
    txid = chain_node.rpc("sendmany", "", {dest: Decimal("0.001"), other: Decimal("0.0005")})
    decoded = chain_node.rpc("getrawtransaction", txid, True)
    assert {o["scriptPubKey"].get("address") for o in decoded["vout"]} >= {dest, other}
    block = chain_node.rpc("generateblock", chain_node.rpc("getnewaddress"), [txid])
    assert chain_node.rpc("getblock", block["hash"])["tx"][1] == txid


def test_signrawtransactionwithwallet_and_unsigned_errors(chain_node: ChainNode) -> None:
    chain_node.rpc("createwallet", "w")
    address = chain_node.rpc("getnewaddress")
    chain_node.rpc("generatetoaddress", 101, address)
    coin = chain_node.rpc("listunspent")[0]
    raw = chain_node.rpc(
        "createrawtransaction",
        [{"txid": coin["txid"], "vout": coin["vout"]}],
        {address: coin["amount"] - Decimal("0.0001")},
    )
    signed = chain_node.rpc("signrawtransactionwithwallet", raw)
    assert signed["complete"] is True
    assert chain_node.rpc("testmempoolaccept", [signed["hex"]])[0]["allowed"] is True
    unsigned = chain_node.rpc("signrawtransactionwithkey", raw, [wif_encode(os.urandom(32), False)])
    assert unsigned["complete"] is False and len(unsigned["errors"]) == 1
    rejected = chain_node.rpc("testmempoolaccept", [raw])[0]
    assert rejected["allowed"] is False


def test_getblocktemplate_and_submitblock_mine_a_block_built_outside(chain_node: ChainNode) -> None:
    from bitcoin.core import CTransaction

    from simnet.chain import blocks as blk

    chain_node.rpc("createwallet", "w")
    address = chain_node.rpc("getnewaddress")
    txid = chain_node.pay(address, 10_000)
    template = chain_node.rpc("getblocktemplate", {"rules": ["segwit"]})
    assert [t["txid"] for t in template["transactions"]] == [txid]
    txs = [CTransaction.deserialize(bytes.fromhex(t["data"])) for t in template["transactions"]]
    script = p2wpkh_script(pubkey_of(os.urandom(32)))
    coinbase = blk.make_coinbase(template["height"], script, template["coinbasevalue"], txs)
    block = blk.build_block(
        bytes.fromhex(template["previousblockhash"])[::-1],
        template["height"],
        template["curtime"],
        int(template["bits"], 16),
        coinbase,
        txs,
    )
    assert chain_node.rpc("submitblock", block.serialize().hex()) is None
    assert chain_node.rpc("getbestblockhash") == block.GetHash()[::-1].hex()
    assert chain_node.rpc("submitblock", block.serialize().hex()) == "duplicate"
    assert chain_node.rpc("gettransaction", txid)["confirmations"] == 1
