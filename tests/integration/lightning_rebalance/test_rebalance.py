"""Auto-balancing with the SC Cluster (issue 8 item 4), end to end on loopback: the Lightning
API (a real process) with auto-balancing on, the simnet lightningd and hub, the simulated
cluster's rebalance endpoint and the chain. The channel balance is shifted in the stand-in and
the tests watch what the node does about it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from bitcoin.core import CTransaction

from simnet.lightning import bech32
from simnet.pytest_lightning import LightningNodeHandle, free_port, wait_for
from tests.integration.lightning_api.handle import LightningApi, LightningPair
from tests.integration.lightning_rebalance.cluster import ClusterRebalance
from tests.integration.lightning_rebalance.conftest import CAPACITY_SAT

CAPACITY_MSAT = CAPACITY_SAT * 1000
LOW, HIGH = 0.4 * CAPACITY_MSAT, 0.6 * CAPACITY_MSAT  # the fixture's band
MIDDLE_MSAT = CAPACITY_MSAT // 2

StartApi = Callable[..., LightningApi]
StartCluster = Callable[..., ClusterRebalance]


def local_msat(node: LightningNodeHandle) -> int:
    channels = [
        c for c in node.rpc.listpeerchannels()["channels"] if c["state"] == "CHANNELD_NORMAL"
    ]
    assert len(channels) == 1
    return int(channels[0]["to_us_msat"])


def set_local(node: LightningNodeHandle, target_msat: int) -> None:
    """Shift the stand-in's channel so the node holds ``target_msat`` on its side."""
    node.shift_channel_balance(local_msat(node) - target_msat)
    assert local_msat(node) == target_msat


def pay_out(pair: LightningPair, sat: int) -> None:
    """The node pays an invoice of the outside world (a member's withdrawal over Lightning)."""
    node, hub = pair
    invoice = hub.make_outside_invoice(sat * 1000, "member payout")
    node.rpc.xpay(invoice["bolt11"])


def rebalance(api: LightningApi) -> dict[str, Any]:
    with api.client() as client:
        reply = client.get("/v1/rebalance")
        assert reply.status_code == 200
        result: dict[str, Any] = reply.json()
        return result


def metric(api: LightningApi, name: str, **labels: str) -> float | None:
    with api.client() as client:
        text = client.get("/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name + (f"{{{want}}}" if labels else "")) + r" (\S+)"
    found = re.search(r"^" + pattern + "$", text, re.M)
    return float(found.group(1)) if found else None


def completed(api: LightningApi, count: int = 1, timeout: float = 45) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        swaps: list[dict[str, Any]] = rebalance(api)["swaps"]
        finished = [s for s in swaps if s["state"] == "complete"]
        return swaps if len(finished) >= count else None

    swaps: list[dict[str, Any]] = wait_for(done, timeout, f"{count} complete swap(s)")
    return swaps


def paid_to(chain: Any, txid: str, address: str) -> int:
    tx = CTransaction.deserialize(bytes.fromhex(chain.call("getrawtransaction", txid)))
    script = bech32.script_for_address("bcrt", address)
    return sum(o.nValue for o in tx.vout if bytes(o.scriptPubKey) == script)


def test_inside_band_nothing_then_drained_below_low_one_swap_back_in_band(
    pair: LightningPair, start_cluster: StartCluster, start_api: StartApi
) -> None:
    node, _ = pair
    set_local(node, MIDDLE_MSAT)
    cluster = start_cluster()
    api = start_api(cluster.url)
    # inside the band: several passes, no swap asked for
    wait_for(lambda: metric(api, "scnode_lightning_rebalance_local_fraction") == 0.5, 15)
    time.sleep(1.5)
    assert rebalance(api)["swaps"] == []
    assert cluster.swaps() == []

    pay_out(pair, 600_000)  # members' payouts drain the channel to 0.38 of capacity
    drained = local_msat(node)
    assert drained < LOW
    amount = (MIDDLE_MSAT - drained) // 1000  # to the band's middle
    completed(api)
    time.sleep(2.5)  # passes after the cool-down: back in the band, nothing more
    swaps = rebalance(api)["swaps"]
    assert len(swaps) == 1, swaps
    swap = swaps[0]
    assert swap["direction"] == "to_node"
    assert swap["amount_sat"] == amount
    assert local_msat(node) == drained + amount * 1000
    assert LOW <= local_msat(node) <= HIGH
    # the on-chain leg: amount + the cluster's fee from the node's lightningd wallet
    (seen,) = cluster.swaps()
    assert seen["swap_id"] == swap["swap_id"] and seen["state"] == "complete"
    fee = 100 + amount * 1_000 // 1_000_000  # the simulated cluster's 100 sat + 1000 ppm
    assert swap["fee_sat"] == fee
    assert paid_to(node.chain, swap["txid"], seen["address"]) == amount + fee
    status = rebalance(api)
    assert status["moved_sat"] == amount and status["fees_sat"] == fee
    assert (
        metric(
            api, "scnode_lightning_rebalance_swaps_total", direction="to_node", outcome="complete"
        )
        == 1
    )


def test_above_high_gives_liquidity_back_for_coins_on_chain(
    pair: LightningPair, start_cluster: StartCluster, start_api: StartApi
) -> None:
    node, _ = pair
    set_local(node, int(0.65 * CAPACITY_MSAT))  # deposits filled the node's side
    cluster = start_cluster()
    api = start_api(cluster.url)
    (swap,) = completed(api)
    assert swap["direction"] == "from_node"
    assert swap["amount_sat"] == 750_000
    fee = 100 + 750_000 * 1_000 // 1_000_000
    # the node paid amount + fee (+ the hub's routing fee) over Lightning
    assert MIDDLE_MSAT - (fee + 30) * 1000 <= local_msat(node) <= MIDDLE_MSAT - fee * 1000
    # and got the amount on-chain, to an address of its own wallet
    assert paid_to(node.chain, swap["txid"], swap["address"]) == 750_000
    node.chain.mine(1)
    wait_for(
        lambda: any(o["txid"] == swap["txid"] for o in node.rpc.listfunds()["outputs"]),
        15,
        "the cluster's coins in the node's wallet",
    )
    time.sleep(2)
    assert len(rebalance(api)["swaps"]) == 1
    assert len(cluster.swaps()) == 1


def test_budget_exhausted_no_more_action_and_alert(
    pair: LightningPair, start_cluster: StartCluster, start_api: StartApi
) -> None:
    node, _ = pair
    set_local(node, int(0.3 * CAPACITY_MSAT))
    cluster = start_cluster()
    api = start_api(
        cluster.url,
        REBALANCE_DAILY_MAX_SAT="300000",
        REBALANCE_ALERT_OUTSIDE_BAND_SECONDS="2",
    )
    (swap,) = completed(api)
    assert swap["amount_sat"] == 300_000  # capped by the day's budget
    assert local_msat(node) < LOW  # not enough to reach the band
    wait_for(
        lambda: metric(api, "scnode_lightning_rebalance_alert", kind="budget_exhausted") == 1,
        15,
        "budget alert",
    )
    assert "ALERT rebalance budget_exhausted" in api.log()
    assert "budget_exhausted" in rebalance(api)["alerts"]
    # and the balance stays outside the band longer than allowed
    wait_for(
        lambda: metric(api, "scnode_lightning_rebalance_alert", kind="outside_band") == 1,
        15,
        "outside-band alert",
    )
    assert "ALERT rebalance outside_band" in api.log()
    time.sleep(1.5)
    assert len(rebalance(api)["swaps"]) == 1
    assert len(cluster.swaps()) == 1
    assert rebalance(api)["moved_sat"] == 300_000


def test_cluster_refuses_alert_and_nothing_sent(
    pair: LightningPair, start_cluster: StartCluster, start_api: StartApi
) -> None:
    node, _ = pair
    set_local(node, int(0.3 * CAPACITY_MSAT))
    cluster = start_cluster()
    cluster.refuse("maintenance")
    funds_before = node.rpc.listfunds()["outputs"]
    api = start_api(cluster.url, REBALANCE_COOLDOWN_SECONDS="600")
    wait_for(
        lambda: metric(api, "scnode_lightning_rebalance_alert", kind="cluster_refused") == 1,
        15,
        "refusal alert",
    )
    assert "ALERT rebalance cluster_refused" in api.log()
    (swap,) = rebalance(api)["swaps"]
    assert swap["state"] == "failed" and "maintenance" in swap["error"]
    assert rebalance(api)["moved_sat"] == 0  # the reservation is released
    assert cluster.swaps() == []
    assert node.rpc.listfunds()["outputs"] == funds_before


def test_cluster_down_alert_retry_after_restart_without_a_second_swap(
    pair: LightningPair, start_cluster: StartCluster, start_api: StartApi
) -> None:
    node, _ = pair
    set_local(node, int(0.38 * CAPACITY_MSAT))
    port = free_port()  # nothing listens there yet: the cluster is down
    api = start_api(f"http://127.0.0.1:{port}")
    wait_for(
        lambda: metric(api, "scnode_lightning_rebalance_alert", kind="cluster_unreachable") == 1,
        15,
        "unreachable alert",
    )
    assert "ALERT rebalance cluster_unreachable" in api.log()
    (before,) = rebalance(api)["swaps"]
    assert before["state"] == "invoiced"
    time.sleep(1)  # retries meanwhile: still the one swap
    assert len(rebalance(api)["swaps"]) == 1

    api.kill9()  # a real restart of the process, state file kept
    cluster = start_cluster(port)
    api.start()
    (swap,) = completed(api)
    assert swap["swap_id"] == before["swap_id"]
    assert local_msat(node) == MIDDLE_MSAT
    assert [s["swap_id"] for s in cluster.swaps()] == [before["swap_id"]]
    invoices = [
        i
        for i in node.rpc.listinvoices()["invoices"]
        if i["label"].startswith("scnode-rebalance:") and i["status"] == "paid"
    ]
    assert [i["label"] for i in invoices if before["swap_id"] in i["label"]] == [
        f"scnode-rebalance:{before['swap_id']}"
    ]
    assert metric(api, "scnode_lightning_rebalance_alert", kind="cluster_unreachable") == 0


def test_restart_after_the_coins_went_out_finishes_the_same_swap_once(
    pair: LightningPair, start_cluster: StartCluster, start_api: StartApi
) -> None:
    """kill -9 between the on-chain leg and the cluster's payment: the restarted API tells the
    cluster the same txid; nothing is sent twice, no second swap."""
    node, _ = pair
    set_local(node, int(0.38 * CAPACITY_MSAT))
    cluster = start_cluster()
    cluster.hold_onchain(True)  # the cluster takes no notice of the node's coins for now
    api = start_api(cluster.url)
    sent = wait_for(
        lambda: [s for s in rebalance(api)["swaps"] if s["state"] == "sent"], 30, "coins sent"
    )
    (swap,) = sent
    api.kill9()
    cluster.hold_onchain(False)
    api.start()
    (done,) = completed(api)
    assert (done["swap_id"], done["txid"]) == (swap["swap_id"], swap["txid"])
    assert local_msat(node) == MIDDLE_MSAT
    (seen,) = cluster.swaps()
    assert seen["state"] == "complete" and seen["txid"] == swap["txid"]
    # exactly one transaction of the node's pays the swap address
    payments = [
        txid
        for txid in node.chain.call("getrawmempool")
        if paid_to(node.chain, txid, seen["address"]) > 0
    ]
    assert payments == [swap["txid"]]
