"""The Lightning API against the simnet lightningd and the simulated SC Cluster hub (real
processes): health, node info, invoices by idempotency key, paid invoices as events, keys."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from simnet.pytest_lightning import wait_for
from tests.integration.lightning_api.handle import LightningApi, LightningPair, next_event

CHANNEL_MSAT = 5_000_000 * 1000


def test_health_reports_sync_peer_channel_and_balances(
    shared_pair: LightningPair, ln_api: LightningApi
) -> None:
    node, hub = shared_pair
    assert httpx.get(f"{ln_api.url}/healthz").json()["status"] == "ok"  # public, no key
    assert httpx.get(f"{ln_api.url}/v1/status").status_code == 401

    def to_us() -> int:
        return int(node.rpc.listpeerchannels()["channels"][0]["to_us_msat"])

    with ln_api.client() as client:
        status = client.get("/v1/status").json()
        assert status["ok"] is True
        assert status["synced"] is True
        assert status["blockheight"] == status["chain_tip"] == node.chain.height()
        channel = status["channel"]
        assert channel["peer_id"] == hub.node_id
        assert channel["state"] == "CHANNELD_NORMAL"
        assert channel["peer_connected"] is True
        assert channel["local_msat"] + channel["remote_msat"] == CHANNEL_MSAT
        assert channel["local_msat"] == to_us()

        before = channel["local_msat"]
        node.shift_channel_balance(1_234_567)  # the node moves balance to the hub
        hub.shift_channel_balance(234_567)  # and the hub some back
        channel = client.get("/v1/status").json()["channel"]
        assert (channel["local_msat"], channel["remote_msat"]) == (
            before - 1_000_000,
            CHANNEL_MSAT - before + 1_000_000,
        )

        node.lag_blocks(3)
        try:
            node.chain.mine(3)
            lagging = wait_for(
                lambda: (s := client.get("/v1/status").json())["blocks_behind"] == 3 and s,
                10,
                "lightningd three blocks behind",
            )
            assert lagging["synced"] is False
            assert lagging["ok"] is False
        finally:
            node.resume()
        wait_for(lambda: client.get("/v1/status").json()["synced"], 10, "synced again")

        info = client.get("/v1/node").json()
        assert info["id"] == node.node_id
        assert info["network"] == "regtest"
        assert info["num_active_channels"] == 1


def test_invoice_per_member_and_key_is_created_once_and_its_payment_is_an_event(
    shared_pair: LightningPair, ln_api: LightningApi
) -> None:
    _, hub = shared_pair
    body = {
        "member": "alice",
        "idempotency_key": "deposit-0001",
        "amount_msat": 25_000_000,
        "description": "deposit to the exchange",
        "expiry_seconds": 600,
    }
    with ln_api.client("read") as reader:
        assert reader.post("/v1/invoices", json=body).status_code == 403  # no invoice scope
    with ln_api.client("invoice") as client:
        first = client.post("/v1/invoices", json=body)
        assert first.status_code == 201, first.text
        invoice = first.json()
        assert invoice["label"] == "alice:deposit-0001"
        assert invoice["member"] == "alice"
        assert invoice["status"] == "unpaid"
        assert invoice["bolt11"].startswith("lnbcrt")
        again = client.post("/v1/invoices", json=body)
        assert again.status_code == 200
        assert again.json()["bolt11"] == invoice["bolt11"]
        assert again.json()["replayed"] is True
        changed = client.post("/v1/invoices", json={**body, "amount_msat": 26_000_000})
        assert changed.status_code == 409
        assert client.post("/v1/invoices", json={**body, "member": "a:b"}).status_code == 422

        with ln_api.websocket() as ws:
            hub.pay_from_outside(invoice["bolt11"])
            event = next_event(ws, "invoice_paid", payment_hash=invoice["payment_hash"])
        assert event["data"]["member"] == "alice"
        assert event["data"]["payment_hash"] == invoice["payment_hash"]
        assert event["data"]["amount_received_msat"] == 25_000_000
        paid = client.get(f"/v1/invoices/{invoice['payment_hash']}").json()
        assert paid["status"] == "paid"
        assert paid["amount_received_msat"] == 25_000_000
        # paying an already-paid invoice's key again still gives the same (now paid) invoice
        replay = client.post("/v1/invoices", json=body).json()
        assert (replay["status"], replay["payment_hash"]) == ("paid", invoice["payment_hash"])


def test_invoice_list_pages_and_filters_by_member(ln_api: LightningApi) -> None:
    with ln_api.client("invoice") as client:
        for i in range(5):
            member = "bob" if i % 2 else "carol"
            client.post(
                "/v1/invoices",
                json={"member": member, "idempotency_key": f"page-{i:04d}", "amount_msat": 1000},
            ).raise_for_status()
        seen: list[str] = []
        start = 0
        while True:
            page = client.get("/v1/invoices", params={"start": start, "limit": 2}).json()
            assert len(page["invoices"]) <= 2
            seen += [i["label"] for i in page["invoices"]]
            start = page["next_start"]
            if not page["more"]:
                break
        ours = [label for label in seen if ":page-" in label]
        assert ours == [f"{'bob' if i % 2 else 'carol'}:page-{i:04d}" for i in range(5)]
        assert len(seen) == len(set(seen))
        bobs = client.get("/v1/invoices", params={"member": "bob", "limit": 100}).json()
        assert [i["label"] for i in bobs["invoices"]] == ["bob:page-0001", "bob:page-0003"]


def test_events_resume_from_a_cursor_across_a_restart(
    shared_pair: LightningPair, start_lightning_api: Callable[..., LightningApi]
) -> None:
    """Invoices paid while the API is down are published after it restarts (lightningd's
    list is the truth, cl-zmq messages sent meanwhile are lost), each exactly once, and a
    client resumes from the last event id it saw."""
    node, hub = shared_pair
    ln_api = start_lightning_api(node, hub.node_id)
    with ln_api.client("invoice") as client:
        bolt11s = [
            client.post(
                "/v1/invoices",
                json={"member": "dave", "idempotency_key": f"resume-{i:04d}", "amount_msat": 5000},
            ).json()["bolt11"]
            for i in range(3)
        ]
    with ln_api.websocket() as ws:
        hub.pay_from_outside(bolt11s[0])
        first = next_event(ws, "invoice_paid")
    ln_api.kill9()
    hub.pay_from_outside(bolt11s[1])
    hub.pay_from_outside(bolt11s[2])
    ln_api.start()
    with ln_api.websocket(cursor=first["id"]) as ws:
        later = [next_event(ws, "invoice_paid") for _ in range(2)]
    assert [e["data"]["label"] for e in later] == ["dave:resume-0001", "dave:resume-0002"]
    assert all(e["id"] > first["id"] for e in later)
    time.sleep(1.5)  # another poll or two: nothing is published twice
    paid = [e for e in ln_api.events("invoice_paid") if e["data"]["member"] == "dave"]
    assert sorted(e["data"]["label"] for e in paid) == [f"dave:resume-{i:04d}" for i in range(3)]


def test_channel_and_peer_changes_are_events_and_metrics_need_a_key(
    shared_pair: LightningPair, ln_api: LightningApi
) -> None:
    node, hub = shared_pair
    states = [e["data"] for e in ln_api.events("channel_state")]
    assert [(s["peer_id"], s["state"], s["peer_connected"]) for s in states] == [
        (hub.node_id, "CHANNELD_NORMAL", True)
    ]
    with ln_api.websocket() as ws:
        node.rpc.disconnect(hub.node_id, force=True)
        gone = next_event(ws, "peer_disconnected")
        back = next_event(ws, "peer_connected")  # the stand-in reconnects by itself
    assert gone["data"]["peer_id"] == back["data"]["peer_id"] == hub.node_id
    assert httpx.get(f"{ln_api.url}/metrics").status_code == 401
    with ln_api.client() as client:
        text = client.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    local = node.rpc.listpeerchannels()["channels"][0]["to_us_msat"]
    assert samples[("scnode_lightning_channel_balance_msat", (("side", "local"),))] == local
    assert samples[("scnode_lightning_zmq_messages_total", (("topic", "disconnect"),))] >= 1
    bad = {"Authorization": "Bearer scnk_00000000_" + "A" * 43}
    assert httpx.get(f"{ln_api.url}/v1/node", headers=bad).status_code == 401
