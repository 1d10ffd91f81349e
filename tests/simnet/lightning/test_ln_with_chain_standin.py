"""The Lightning stand-in on the simnet.chain bitcoind stand-in (not the minichain)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from simnet.pytest_lightning import LightningNodeHandle, StandinChain, open_channel


def test_follows_chain_standin_funds_and_opens_a_channel(
    start_chain_node: Callable[..., Any], ln_dir: Path
) -> None:
    chain = StandinChain(start_chain_node())
    chain.mine(101)
    handles = []
    try:
        for alias, role in (("hub", "hub"), ("node", "node")):
            base = ln_dir / alias
            base.mkdir()
            handles.append(LightningNodeHandle(base, chain, alias=alias, role=role, zmq=False))
        hub, node = handles
        node.wait_synced()
        open_channel(node, hub, amount_sat=1_000_000)
        channel = node.rpc.listpeerchannels()["channels"][0]
        assert channel["short_channel_id"].startswith(f"{chain.height()}x")
        block = chain.call("getblockhash", int(channel["short_channel_id"].split("x")[0]))
        funding = chain.call("getrawtransaction", channel["funding_txid"], True, block)
        # the real 2-of-2 P2WSH output of 1,000,000 sat
        assert Decimal(str(funding["vout"][0]["value"])) == Decimal("0.01")
        assert funding["vout"][0]["scriptPubKey"]["type"] == "witness_v0_scripthash"
        chain.mine(3)
        node.wait_synced()
        chain.node.reorg(1)
        chain.mine(2)
        node.wait_synced()
        assert "Reorg detected" in node.log_text()
        # (pruning is exercised on the minichain: regtest bitcoind prunes only above height 1000)
    finally:
        for handle in handles:
            handle.stop()
