"""Mining RPCs the real-daemon fixture layer builds on (tests/daemons.py): `prioritisetransaction`
(a reorg that keeps transactions out of the new branch) and `generatetodescriptor` (a block that
differs from an invalidated one). Found missing when the layer ran against real daemons."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from decimal import Decimal

import pytest

from simnet.pytest_chain import ChainNode, ChainRPCError


@pytest.mark.parametrize("version", ["v30", "v23"])
def test_prioritised_transaction_stays_out_of_blocks_until_its_delta_is_undone(
    start_chain_node: Callable[..., ChainNode], version: str
) -> None:
    node = start_chain_node(version=version)
    node.rpc("createwallet", "w")
    node.rpc("generatetoaddress", 101, node.rpc("getnewaddress", wallet="w"))
    txid = node.rpc("sendtoaddress", node.rpc("getnewaddress", wallet="w"), 1, wallet="w")
    base = node.rpc("getmempoolentry", txid)["fees"]["base"]
    assert node.rpc("prioritisetransaction", txid, 0, -100_000_000) is True
    fees = node.rpc("getmempoolentry", txid)["fees"]
    assert (fees["base"], fees["modified"]) == (base, base - Decimal(1))
    block = node.rpc("generatetoaddress", 1, node.rpc("getnewaddress", wallet="w"))[0]
    assert node.rpc("getblock", block)["tx"][1:] == []
    assert txid in node.rpc("getrawmempool")
    node.rpc("prioritisetransaction", txid, None, 100_000_000)
    block = node.rpc("generatetoaddress", 1, node.rpc("getnewaddress", wallet="w"))[0]
    assert node.rpc("getblock", block)["tx"][1:] == [txid]
    with pytest.raises(ChainRPCError) as err:
        node.rpc("prioritisetransaction", txid, 1, 1000)
    assert err.value.code == -8
    assert "dummy argument to prioritisetransaction must be 0" in err.value.message


def test_generatetodescriptor_pays_the_descriptor_and_refuses_a_ranged_one(
    chain_node: ChainNode,
) -> None:
    script = "0014" + secrets.token_hex(20)
    desc = f"raw({script})"
    desc += "#" + chain_node.rpc("getdescriptorinfo", desc)["checksum"]
    (block,) = chain_node.rpc("generatetodescriptor", 1, desc)
    coinbase = chain_node.rpc("getblock", block, 2)["tx"][0]
    assert coinbase["vout"][0]["scriptPubKey"]["hex"] == script
    chain_node.rpc("createwallet", "w")
    ranged = next(
        d["desc"]
        for d in chain_node.rpc("listdescriptors", wallet="w")["descriptors"]
        if d["desc"].startswith("wpkh(")
    )
    with pytest.raises(ChainRPCError) as err:
        chain_node.rpc("generatetodescriptor", 1, ranged)
    assert err.value.code == -5
