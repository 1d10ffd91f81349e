"""Paying invoices through the Lightning API: at most once per idempotency key and per
invoice, outcomes taken from lightningd's lists (an error from a pay call is not proof of
failure), and a kill -9 between "sent" and "recorded" reconciled on restart, never repaid."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from simnet.pytest_lightning import LightningNodeHandle, wait_for
from tests.integration.lightning_api.handle import LightningApi, LightningPair, next_event


def hub_fee(amount_msat: int) -> int:
    """lightningd's default forwarding fee, charged by the hub: 1 msat + 10 ppm."""
    return 1 + amount_msat * 10 // 1_000_000


def completed_parts(node: LightningNodeHandle, payment_hash: str) -> list[dict[str, Any]]:
    parts = node.rpc.listsendpays(payment_hash=payment_hash)["payments"]
    return [p for p in parts if p["status"] == "complete"]


def payment_state(api: LightningApi, key: str) -> dict[str, Any]:
    with api.client() as client:
        body: dict[str, Any] = client.get(f"/v1/payments/{key}").json()
    return body


def test_an_invoice_is_paid_once_per_key_within_the_fee_limit(
    shared_pair: LightningPair, ln_api: LightningApi
) -> None:
    node, hub = shared_pair
    outside = hub.make_outside_invoice(40_000_000, "coffee")
    body = {"member": "erin", "idempotency_key": "withdraw-0001", "bolt11": outside["bolt11"]}
    with ln_api.client("invoice") as no_pay:
        assert no_pay.post("/v1/payments", json=body).status_code == 403
    with ln_api.websocket() as ws, ln_api.client("pay") as client:
        first = client.post("/v1/payments", json=body)
        assert first.status_code == 201, first.text
        event = next_event(ws, "payment_settled", idempotency_key="withdraw-0001")
    paid = first.json()
    assert paid["state"] == "complete"
    assert paid["amount_msat"] == 40_000_000
    assert paid["fee_msat"] == hub_fee(40_000_000)
    assert paid["max_fee_msat"] == 1_000 + 40_000_000 * 5_000 // 1_000_000  # the default limit
    assert paid["preimage"] == outside["preimage"]
    assert event["data"]["idempotency_key"] == "withdraw-0001"
    assert event["data"]["state"] == "complete"
    with ln_api.client("pay") as client:
        again = client.post("/v1/payments", json=body)
        assert again.status_code == 200
        assert {**again.json(), "replayed": False, "updated_at": 0} == {
            **paid,
            "replayed": False,
            "updated_at": 0,
        }
        other_key = client.post("/v1/payments", json={**body, "idempotency_key": "withdraw-0002"})
        assert other_key.status_code == 409
        assert "withdraw-0001" in other_key.json()["detail"]
        changed = client.post("/v1/payments", json={**body, "max_fee_msat": 5})
        assert changed.status_code == 409
        garbage = {**body, "idempotency_key": "withdraw-0003", "bolt11": "lnbcrt1garbage" * 3}
        assert client.post("/v1/payments", json=garbage).status_code == 422
    assert len(completed_parts(node, outside["payment_hash"])) == 1
    listed = httpx.get(
        f"{ln_api.url}/v1/payments",
        params={"member": "erin"},
        headers=ln_api.headers(),
    ).json()["payments"]
    assert [p["idempotency_key"] for p in listed] == ["withdraw-0001"]
    assert len([e for e in ln_api.events("payment_settled") if e["data"]["member"] == "erin"]) == 1


def test_a_failed_payment_is_final_and_a_new_key_may_retry(
    shared_pair: LightningPair, ln_api: LightningApi
) -> None:
    node, hub = shared_pair
    outside = hub.make_outside_invoice(30_000_000)
    body = {"member": "frank", "idempotency_key": "withdraw-f-01", "bolt11": outside["bolt11"]}
    node.fail_next_payment(205)  # xpay: no route with enough capacity, nothing sent
    with ln_api.client("pay") as client:
        failed = client.post("/v1/payments", json=body)
        assert failed.status_code == 201, failed.text
        assert failed.json()["state"] == "failed"
        assert failed.json()["error"]["code"] == 205
        assert client.post("/v1/payments", json=body).json()["state"] == "failed"
        retry = client.post("/v1/payments", json={**body, "idempotency_key": "withdraw-f-02"})
        assert retry.json()["state"] == "complete", retry.text
    failures = [e for e in ln_api.events("payment_failed") if e["data"]["member"] == "frank"]
    assert [e["data"]["idempotency_key"] for e in failures] == ["withdraw-f-01"]
    assert len(completed_parts(node, outside["payment_hash"])) == 1


@pytest.mark.parametrize("then", ["complete", "fail"])
def test_an_error_from_pay_with_a_part_still_held_is_not_taken_as_failure(
    shared_pair: LightningPair, ln_api: LightningApi, then: str
) -> None:
    """PROTOCOLS.md: pay can answer 210 while a part is still held by the payee; the payment
    is settled or failed only from lightningd's lists."""
    node, hub = shared_pair
    api = ln_api
    outside = hub.make_outside_invoice(12_000_000)
    key = f"held-part-{then}"
    node.fail_next_payment(210, pending_seconds=3, then=then)
    with api.client("pay") as client:
        first = client.post(
            "/v1/payments",
            json={"member": "gina", "idempotency_key": key, "bolt11": outside["bolt11"]},
        )
    assert first.status_code == 201, first.text
    assert first.json()["state"] == "pending"
    final = wait_for(
        lambda: (p := payment_state(api, key))["state"] != "pending" and p, 30, "an outcome"
    )
    if then == "complete":
        assert final["state"] == "complete"
        assert final["preimage"] == outside["preimage"]
        assert len(completed_parts(node, outside["payment_hash"])) == 1
        kinds = {e["kind"] for e in api.events() if e["data"].get("idempotency_key") == key}
        assert kinds == {"payment_settled"}
    else:
        assert final["state"] == "failed"
        assert completed_parts(node, outside["payment_hash"]) == []
        kinds = {e["kind"] for e in api.events() if e["data"].get("idempotency_key") == key}
        assert kinds == {"payment_failed"}


def test_kill9_between_sending_and_recording_never_pays_twice(
    shared_pair: LightningPair, start_lightning_api: Callable[..., LightningApi]
) -> None:
    """The hub is frozen (SIGSTOP) so the payment's HTLC is in flight while the API process is
    killed; lightningd completes the payment meanwhile. The restarted API learns the outcome
    from listpays, and the same request again is answered from the record, not paid again."""
    node, hub = shared_pair
    api = start_lightning_api(node, hub.node_id)
    outside = hub.make_outside_invoice(21_000_000)
    body = {"member": "hank", "idempotency_key": "withdraw-kill-1", "bolt11": outside["bolt11"]}
    assert hub.proc is not None
    os.kill(hub.proc.pid, signal.SIGSTOP)
    try:
        with api.client("pay") as client, pytest.raises(httpx.TimeoutException):
            client.post("/v1/payments", json=body, timeout=2)
        # sent (on a loaded machine the API may get there after the client gave up)
        sendpays = wait_for(
            lambda: node.rpc.listsendpays(payment_hash=outside["payment_hash"])["payments"],
            15,
            "the payment's HTLC sent",
        )
        assert [p["status"] for p in sendpays] == ["pending"]  # outcome unknown
        api.kill9()
    finally:
        os.kill(hub.proc.pid, signal.SIGCONT)
    wait_for(lambda: completed_parts(node, outside["payment_hash"]), 15, "payment completes")
    api.start()
    with api.websocket(cursor=0) as ws:
        settled = next_event(ws, "payment_settled", payment_hash=outside["payment_hash"])
    assert settled["data"]["idempotency_key"] == "withdraw-kill-1"
    assert settled["data"]["member"] == "hank"
    with api.client("pay") as client:
        again = client.post("/v1/payments", json=body)
    assert again.status_code == 200, again.text
    assert again.json()["state"] == "complete"
    assert again.json()["replayed"] is True
    assert again.json()["preimage"] == outside["preimage"]
    assert len(node.rpc.listsendpays(payment_hash=outside["payment_hash"])["payments"]) == 1
    paid = [
        i
        for i in hub.control("GET", "/v1/outside/invoices")["invoices"]
        if i.get("payment_hash") == outside["payment_hash"]
    ]
    assert len(paid) == 1
