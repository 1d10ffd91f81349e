"""Channel open/close with backups, restart keeping state, following the chain (lag, prune)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import pytest
import zmq
from bitcoin.core import CTransaction

from simnet.lightning import bech32
from simnet.pytest_lightning import ChainHandle, LightningNodeHandle, open_channel, wait_for


def test_open_close_rewrites_emergency_recover(
    start_lightning_node: Callable[..., LightningNodeHandle],
    lightning_hub: LightningNodeHandle,
    ln_chain: ChainHandle,
) -> None:
    node = start_lightning_node("chan")
    recover = node.network_dir / "emergency.recover"
    assert not recover.exists()
    opened = open_channel(node, lightning_hub, amount_sat=2_000_000)
    assert recover.exists()
    after_open = recover.read_bytes()
    scb = node.rpc.staticbackup()["scb"]
    assert len(scb) == 1 and opened["channel_id"] in scb[0]
    channel = node.rpc.listpeerchannels()["channels"][0]
    assert channel["short_channel_id"].startswith(f"{ln_chain.height()}x")
    closed = node.rpc.close(lightning_hub.node_id)
    assert closed["type"] == "mutual" and len(closed["txids"]) == 1
    assert recover.read_bytes() != after_open
    assert node.rpc.listpeerchannels()["channels"][0]["state"] == "CLOSINGD_COMPLETE"
    ln_chain.mine(1)
    wait_for(
        lambda: node.rpc.listpeerchannels()["channels"][0]["state"] == "ONCHAIN", 10, "ONCHAIN"
    )
    # the closing output comes back to the on-chain wallet once mined
    outputs = wait_for(
        lambda: [o for o in node.rpc.listfunds()["outputs"] if o["txid"] == closed["txids"][0]],
        10,
        "closing output",
    )
    assert outputs[0]["amount_msat"] == 2_000_000_000 - 196_000


def test_restart_keeps_state_and_backup_copy_is_consistent(
    start_lightning_node: Callable[..., LightningNodeHandle],
) -> None:
    node = start_lightning_node("restart")
    node_id = node.node_id
    inv = node.rpc.invoice(5000, "keep-me", "survives a restart")
    node.restart()
    assert node.node_id == node_id
    kept = node.rpc.listinvoices("keep-me")["invoices"][0]
    assert kept["bolt11"] == inv["bolt11"] and kept["status"] == "unpaid"
    # the backup database is a real second copy holding the same invoice
    with sqlite3.connect(node.db_backup) as db:
        rows = db.execute("SELECT key FROM objects WHERE kind = 'invoice'").fetchall()
    assert rows == [("keep-me",)]


def test_lag_hold_and_resume(
    start_lightning_node: Callable[..., LightningNodeHandle], ln_chain: ChainHandle
) -> None:
    node = start_lightning_node("lag")
    node.wait_synced()
    node.lag_blocks(3)
    ln_chain.mine(5)
    wait_for(lambda: node.blockheight() == ln_chain.height() - 3, 10, "lagging height")
    time.sleep(0.3)
    assert node.blockheight() == ln_chain.height() - 3
    assert "warning_lightningd_sync" in node.rpc.getinfo()
    node.resume()
    node.wait_synced()
    assert "warning_lightningd_sync" not in node.rpc.getinfo()


def test_pruned_block_leaves_lightningd_stuck_with_a_warning(
    start_lightning_node: Callable[..., LightningNodeHandle], ln_chain: ChainHandle
) -> None:
    node = start_lightning_node("prune")
    node.wait_synced()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"warning")
    sub.connect(node.zmq_endpoints["warning"])
    try:
        time.sleep(0.2)
        stuck_at = node.blockheight()
        node.hold()
        ln_chain.mine(10)
        ln_chain.call("pruneblockchain", ln_chain.height() - 2)
        node.resume()
        wait_for(lambda: "Block not available (pruned data)" in node.log_text(), 10, "prune log")
        time.sleep(0.5)
        assert node.blockheight() == stuck_at  # stuck for good, like lightningd
        assert node.control("GET", "/v1/status")["chain_trouble"]
        assert sub.poll(2000)
        assert b"Block not available (pruned data)" in sub.recv()
    finally:
        sub.close(0)
        ctx.term()


def test_restart_with_a_channel_reconnects_and_keeps_balances(
    lightning_pair: tuple[LightningNodeHandle, LightningNodeHandle],
) -> None:
    node, hub = lightning_pair
    node.rpc.xpay(hub.make_outside_invoice(7_000_000)["bolt11"])
    before = node.rpc.listpeerchannels()["channels"][0]
    node.restart()
    after = wait_for(
        lambda: [c for c in node.rpc.listpeerchannels()["channels"] if c["peer_connected"]],
        10,
        "reconnected to the hub",
    )[0]
    assert after["to_us_msat"] == before["to_us_msat"]
    assert after["state"] == "CHANNELD_NORMAL"
    assert node.rpc.xpay(hub.make_outside_invoice(1_000_000)["bolt11"])["successful_parts"] == 1
    hub_side = hub.rpc.listpeerchannels()["channels"][0]["to_us_msat"]
    assert (
        node.rpc.listpeerchannels()["channels"][0]["to_us_msat"] + hub_side == after["total_msat"]
    )


def test_database_of_another_node_is_refused(
    start_lightning_node: Callable[..., LightningNodeHandle],
) -> None:
    node = start_lightning_node("restore")
    node.stop()
    secret = node.network_dir / "hsm_secret"
    secret.chmod(0o600)
    secret.write_bytes(bytes(32))  # a different hsm_secret with the old database: CLN #9426
    secret.chmod(0o400)
    with pytest.raises(RuntimeError, match="does not match HSM"):
        node.start()


def test_emergencyrecover_on_a_node_restored_from_hsm_secret_and_backup_file(
    lightning_pair: tuple[LightningNodeHandle, LightningNodeHandle],
    start_lightning_node: Callable[..., LightningNodeHandle],
) -> None:
    node, _hub = lightning_pair
    channel_id = node.rpc.listpeerchannels()["channels"][0]["channel_id"]
    assert node.rpc.emergencyrecover()["stubs"] == []  # the live node knows its channel
    restored = start_lightning_node("restored", zmq=False)
    restored.stop()
    for name in ("hsm_secret", "emergency.recover"):
        target = restored.network_dir / name
        if target.exists():
            target.chmod(0o600)
        target.write_bytes((node.network_dir / name).read_bytes())
    (restored.network_dir / "hsm_secret").chmod(0o400)
    restored.db_main.unlink()
    restored.db_backup.unlink()
    restored.start()
    assert restored.node_id == node.node_id
    assert restored.rpc.emergencyrecover()["stubs"] == [channel_id]


def test_close_to_a_destination_address(
    lightning_pair: tuple[LightningNodeHandle, LightningNodeHandle],
) -> None:
    node, hub = lightning_pair
    address = "bcrt1qek4gm5p06a9dhgvrhf84s2ysx0d5v0fm7mr8p2"
    closed = node.rpc.close(hub.node_id, destination=address)
    tx = CTransaction.deserialize(bytes.fromhex(closed["txs"][0]))
    scripts = {bytes(o.scriptPubKey): o.nValue for o in tx.vout}
    assert scripts[bech32.script_for_address("bcrt", address)] == 5_000_000 - 196
