"""Payments between the node stand-in and the simulated hub (and the outside world behind it)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import zmq
from pyln.client import RpcError

from simnet.pytest_lightning import LightningNodeHandle, wait_for

Pair = tuple[LightningNodeHandle, LightningNodeHandle]
Subscribe = Callable[[str], "zmq.Socket[bytes]"]


@pytest.fixture
def sub() -> Iterator[Subscribe]:
    ctx = zmq.Context()
    socks: list[zmq.Socket[bytes]] = []

    def connect(endpoint: str) -> zmq.Socket[bytes]:
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(endpoint)
        socks.append(s)
        time.sleep(0.2)
        return s

    yield connect
    for s in socks:
        s.close(0)
    ctx.term()


def _balances(pair: Pair) -> tuple[int, int, int]:
    node, hub = pair
    a = node.rpc.listpeerchannels()["channels"][0]
    b = hub.rpc.listpeerchannels()["channels"][0]
    assert a["channel_id"] == b["channel_id"] and a["total_msat"] == b["total_msat"]
    return int(a["to_us_msat"]), int(b["to_us_msat"]), int(a["total_msat"])


def test_outside_pays_node_invoice_zmq_wire_format(lightning_pair: Pair, sub: Subscribe) -> None:
    node, hub = lightning_pair
    listener = sub(node.zmq_endpoints["invoice_payment"])
    hub.shift_channel_balance(-1_000_000_000)  # give the hub side something to send
    inv = node.rpc.invoice(25_000_000, "member-7", "deposit")
    result = hub.pay_from_outside(inv["bolt11"])
    assert result["status"] == "complete"
    frame = listener.recv_multipart()
    assert len(frame) == 1
    paid = node.rpc.listinvoices("member-7")["invoices"][0]
    body = {"msat": 25_000_000, "preimage": paid["payment_preimage"], "label": "member-7"}
    expected = (
        b"invoice_payment\0" + json.dumps({"invoice_payment": body, "payload": body}).encode()
    )
    assert frame[0] == expected
    assert paid["status"] == "paid" and paid["amount_received_msat"] == 25_000_000
    assert node.rpc.waitanyinvoice(0)["label"] == "member-7"
    # reconciliation by index, as a restarted consumer would do it
    node.rpc.invoice(1000, "unpaid-1", "not paid")
    changed = node.rpc.call("listinvoices", {"index": "updated", "start": 1})["invoices"]
    assert [i["label"] for i in changed] == ["member-7"]
    created = node.rpc.call("listinvoices", {"index": "created", "start": 2, "limit": 5})
    assert [i["label"] for i in created["invoices"]] == ["unpaid-1"]
    node_side, hub_side, total = _balances(lightning_pair)
    assert node_side + hub_side == total
    assert hub.rpc.listforwards()["forwards"][0]["out_msat"] == 25_000_000


def test_pay_and_xpay_outside_invoices_balances_agree(lightning_pair: Pair) -> None:
    node, hub = lightning_pair
    before, _, _ = _balances(lightning_pair)
    inv1 = hub.make_outside_invoice(10_000_000)
    res = node.rpc.pay(inv1["bolt11"])  # served by xpay (xpay-handle-pay defaults to true)
    assert res["status"] == "complete" and res["amount_sent_msat"] == 10_000_101
    inv2 = hub.make_outside_invoice(20_000_000)
    res2 = node.rpc.xpay(inv2["bolt11"])
    assert set(res2) == {
        "payment_preimage",
        "amount_msat",
        "amount_sent_msat",
        "failed_parts",
        "successful_parts",
    }
    after, hub_side, total = _balances(lightning_pair)
    assert before - after == 10_000_101 + 20_000_201
    assert after + hub_side == total
    assert sum(f["fee_msat"] for f in hub.rpc.listforwards()["forwards"]) == 302
    # paying again: pay returns the earlier success, xpay refuses with 219
    assert node.rpc.pay(inv1["bolt11"])["payment_preimage"] == res["payment_preimage"]
    with pytest.raises(RpcError) as err:
        node.rpc.xpay(inv2["bolt11"])
    assert err.value.error == {"code": 219, "message": "Already paid this invoice successfully"}
    pays = {p["payment_hash"]: p for p in node.rpc.listpays()["pays"]}
    assert pays[inv1["payment_hash"]]["status"] == "complete"
    assert pays[inv1["payment_hash"]]["preimage"] == res["payment_preimage"]
    statuses = [o["status"] for o in hub.control("GET", "/v1/outside/invoices")["invoices"]]
    assert statuses == ["paid", "paid"]


def test_payment_errors(lightning_pair: Pair) -> None:
    node, hub = lightning_pair
    expiring = hub.control("POST", "/v1/outside/invoice", {"amount_msat": 1000, "expiry": 1})
    time.sleep(2.1)
    with pytest.raises(RpcError) as err:
        node.rpc.xpay(expiring["bolt11"])
    assert err.value.error["code"] == 207
    huge = hub.make_outside_invoice(6_000_000_000)
    with pytest.raises(RpcError) as err:
        node.rpc.xpay(huge["bolt11"])
    assert err.value.error["code"] == 205
    node.fail_next_payment(205)
    small = hub.make_outside_invoice(1000)
    with pytest.raises(RpcError) as err:
        node.rpc.pay(small["bolt11"])
    assert err.value.error["code"] == 205
    node.fail_next_payment(206)
    with pytest.raises(RpcError) as err:
        node.rpc.pay(small["bolt11"])
    assert err.value.error["code"] == 206
    # the failures were injected before anything was sent: the invoice is still payable
    assert node.rpc.pay(small["bolt11"])["status"] == "complete"
    with pytest.raises(RpcError) as err:
        node.rpc.keysend("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798", 1000)
    assert err.value.error["code"] == 210


def test_210_with_parts_pending_resolves_later(lightning_pair: Pair, sub: Subscribe) -> None:
    node, hub = lightning_pair
    listeners = {
        "complete": sub(node.zmq_endpoints["sendpay_success"]),
        "fail": sub(node.zmq_endpoints["sendpay_failure"]),
    }
    for then in ("complete", "fail"):
        inv = hub.make_outside_invoice(3_000_000)
        node.fail_next_payment(210, pending_seconds=1, then=then)
        with pytest.raises(RpcError) as err:
            node.rpc.pay(inv["bolt11"])
        assert err.value.error["code"] == 210
        assert err.value.error["attempts"][0]["status"] == "pending"
        # an error from pay does not prove the payment failed: it is still pending
        payments = node.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"]
        assert payments[0]["status"] == "pending"
        final = wait_for(
            lambda h=inv["payment_hash"]: [  # type: ignore[misc]
                p
                for p in node.rpc.listsendpays(payment_hash=h)["payments"]
                if p["status"] != "pending"
            ],
            10,
            "resolution",
        )
        assert final[0]["status"] == ("complete" if then == "complete" else "failed")
        topic, _, body = listeners[then].recv_multipart()[0].partition(b"\0")
        assert topic == (b"sendpay_success" if then == "complete" else b"sendpay_failure")
        if then == "fail":
            data = json.loads(body)["sendpay_failure"]["data"]
            assert data["failcodename"] == "WIRE_MPP_TIMEOUT"
        outside = hub.control("GET", "/v1/outside/invoices")["invoices"]
        status = {i["payment_hash"]: i["status"] for i in outside}[inv["payment_hash"]]
        assert status == ("paid" if then == "complete" else "unpaid")


def test_keysend_to_hub_and_balance_shift(lightning_pair: Pair) -> None:
    node, hub = lightning_pair
    res = node.rpc.keysend(hub.node_id, 1_234_000)
    assert res["status"] == "complete" and res["amount_sent_msat"] == 1_234_000
    received = [i for i in hub.rpc.listinvoices()["invoices"] if i["label"].startswith("keysend-")]
    assert received[0]["amount_received_msat"] == 1_234_000
    node_side, hub_side, _total = _balances(lightning_pair)
    assert hub_side == 1_234_000
    hub.shift_channel_balance(-500_000_000)
    node_after, hub_after, _ = _balances(lightning_pair)
    assert (node_after, hub_after) == (node_side - 500_000_000, hub_side + 500_000_000)


def test_hub_fails_the_next_htlc_on_demand(lightning_pair: Pair) -> None:
    node, hub = lightning_pair
    hub.fail_next_htlc(0x1007)  # WIRE_TEMPORARY_CHANNEL_FAILURE at the hub
    inv = hub.make_outside_invoice(2_000_000)
    before = node.rpc.listpeerchannels()["channels"][0]["to_us_msat"]
    with pytest.raises(RpcError) as err:
        node.rpc.xpay(inv["bolt11"])
    assert err.value.error["code"] == 205
    failed = node.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"]
    assert [p["status"] for p in failed] == ["failed"]
    assert node.rpc.listpeerchannels()["channels"][0]["to_us_msat"] == before
    assert node.rpc.xpay(inv["bolt11"])["successful_parts"] == 1  # the next attempt goes through


def test_concurrent_payments_never_overspend_the_channel(lightning_pair: Pair) -> None:
    node, hub = lightning_pair
    invoices = [hub.make_outside_invoice(900_000_000)["bolt11"] for _ in range(6)]
    outcomes: list[str] = []

    def pay(bolt11: str) -> None:
        try:
            node.rpc.xpay(bolt11)
            outcomes.append("complete")
        except RpcError as exc:
            outcomes.append(str(exc.error["code"]))

    threads = [threading.Thread(target=pay, args=(b,)) for b in invoices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # 5 x (900,000,000 + 9,001 fee) fit in the spendable 4,945,709,000 msat; the sixth cannot
    assert sorted(outcomes) == ["205"] + ["complete"] * 5
    node_side, hub_side, total = _balances(lightning_pair)
    assert node_side == total - 5 * 900_009_001 and node_side + hub_side == total


def test_keysend_to_the_outside_world(lightning_pair: Pair) -> None:
    node, hub = lightning_pair
    outside = hub.control("GET", "/v1/status")["outside_id"]
    res = node.rpc.keysend(outside, 50_000)
    assert res["status"] == "complete" and res["amount_sent_msat"] == 50_001
    paid = [
        i for i in hub.control("GET", "/v1/outside/invoices")["invoices"] if i["status"] == "paid"
    ]
    assert paid[0]["payment_hash"] == res["payment_hash"]
