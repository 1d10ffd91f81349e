"""LightningService's decisions against a scripted lightningd: idempotent invoices, and when
a payment counts as settled or failed (PROTOCOLS.md: an error from a pay call is not proof)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from scnode_core.eventjournal import EventBus
from scnode_core.lightning_rpc import LightningRpcError, LightningUnavailableError
from scnode_lightning_api.service import LightningService, RequestRefusedError
from scnode_lightning_api.store import LightningApiStore

HASH = "ab" * 32
BOLT11 = "lnbcrt100n1" + "q" * 40


class ScriptedLightningd:
    """Answers calls from a dict of method → answer (or a callable, or an exception)."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, method: str, **params: Any) -> Any:
        # as LightningClient: None values are left out of the request
        self.calls.append((method, {k: v for k, v in params.items() if v is not None}))
        answer = self.answers[method]
        if callable(answer):
            answer = answer(**params)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)


def make(tmp_path: Path, answers: dict[str, Any], grace: float = 60) -> LightningService:
    store = LightningApiStore(tmp_path / "state.sqlite")
    defaults: dict[str, Any] = {
        "getinfo": {"id": "02" + "11" * 32, "network": "regtest"},
        "decode": {
            "type": "bolt11 invoice",
            "valid": True,
            "currency": "bcrt",
            "payee": "03" + "22" * 32,
            "amount_msat": 10_000,
            "payment_hash": HASH,
            "created_at": int(time.time()),
            "expiry": 3600,
        },
        "listpays": {"pays": []},
        "listsendpays": {"payments": []},
    }
    rpc = ScriptedLightningd({**defaults, **answers})
    return LightningService(
        rpc,  # type: ignore[arg-type]
        store,
        EventBus(store.events),
        unsent_grace_seconds=grace,
    )


def pay(service: LightningService, key: str = "withdraw-1", **kw: Any) -> Any:
    args: dict[str, Any] = {
        "member": "m1",
        "idempotency_key": key,
        "bolt11": BOLT11,
        "amount_msat": None,
        "max_fee_msat": None,
    }
    return asyncio.run(service.pay(**{**args, **kw}))


def rpc_of(service: LightningService) -> ScriptedLightningd:
    return service.rpc  # type: ignore[return-value]


def test_a_success_is_recorded_and_the_same_key_is_answered_from_the_record(
    tmp_path: Path,
) -> None:
    service = make(
        tmp_path,
        {"xpay": {"payment_preimage": "cd" * 32, "amount_sent_msat": 10_002}},
    )
    first = pay(service)
    assert (first.payment.state, first.payment.amount_sent_msat) == ("complete", 10_002)
    assert first.payment.to_json()["fee_msat"] == 2
    # default fee limit: 1,000 msat base + 5,000 ppm
    assert rpc_of(service).calls[-1] == ("xpay", {"invstring": BOLT11, "maxfee": 1_050})
    again = pay(service)
    assert again.replayed and again.payment.preimage == "cd" * 32
    assert rpc_of(service).count("xpay") == 1
    with pytest.raises(RequestRefusedError) as other:
        pay(service, key="withdraw-2")
    assert other.value.status == 409
    settled = [e for e in service.store.events.recent(10) if e.kind == "payment_settled"]
    assert len(settled) == 1


def test_an_error_with_a_part_still_pending_leaves_the_payment_pending(tmp_path: Path) -> None:
    service = make(
        tmp_path,
        {
            "xpay": LightningRpcError("xpay", {"code": 210, "message": "Ran out of routes"}),
            "listsendpays": {"payments": [{"status": "pending", "payment_hash": HASH}]},
            "listpays": {"pays": [{"status": "pending", "payment_hash": HASH}]},
        },
    )
    assert pay(service).payment.state == "pending"
    assert [e.kind for e in service.store.events.recent(10)] == []


def test_all_parts_failed_after_an_error_from_pay_is_a_failure(tmp_path: Path) -> None:
    service = make(
        tmp_path,
        {
            "xpay": LightningRpcError("xpay", {"code": 205, "message": "no route"}),
            "listsendpays": {"payments": [{"status": "failed", "payment_hash": HASH}]},
            "listpays": {"pays": [{"status": "failed", "payment_hash": HASH}]},
        },
    )
    failed = pay(service).payment
    assert (failed.state, failed.error_code) == ("failed", 205)
    # a failed payment does not block a retry of the same invoice under a new key
    rpc_of(service).answers["xpay"] = {"payment_preimage": "ee" * 32, "amount_sent_msat": 10_001}
    assert pay(service, key="withdraw-2").payment.state == "complete"


def test_a_pending_record_without_a_live_call_fails_only_after_staying_failed(
    tmp_path: Path,
) -> None:
    """After a restart no pay call is running: failed parts may be a retrying payer between
    attempts, so the record fails only when they are still failed after the grace period."""
    service = make(
        tmp_path,
        {
            "listsendpays": {"payments": [{"status": "failed", "payment_hash": HASH}]},
            "listpays": {"pays": [{"status": "failed", "payment_hash": HASH}]},
        },
        grace=0.2,
    )
    service.store.begin_payment(
        key="withdraw-1",
        member="m1",
        request_hash="x",
        bolt11=BOLT11,
        payment_hash=HASH,
        destination=None,
        amount_msat=10_000,
        max_fee_msat=1_050,
    )
    asyncio.run(service.reconcile_pending())
    assert service.store.payment("withdraw-1").state == "pending"  # type: ignore[union-attr]
    time.sleep(0.3)
    asyncio.run(service.reconcile_pending())
    record = service.store.payment("withdraw-1")
    assert record is not None and record.state == "failed"


def test_a_record_lightningd_never_saw_fails_after_the_grace_and_never_repays(
    tmp_path: Path,
) -> None:
    service = make(tmp_path, {}, grace=0.2)
    service.store.begin_payment(
        key="withdraw-1",
        member="m1",
        request_hash="x",
        bolt11=BOLT11,
        payment_hash=HASH,
        destination=None,
        amount_msat=10_000,
        max_fee_msat=1_050,
    )
    asyncio.run(service.reconcile_pending())
    assert service.store.payment("withdraw-1").state == "pending"  # type: ignore[union-attr]
    time.sleep(0.3)
    asyncio.run(service.reconcile_pending())
    record = service.store.payment("withdraw-1")
    assert record is not None and record.state == "failed"
    assert "never started" in (record.error or "")
    assert rpc_of(service).count("xpay") == 0


def test_a_completed_payment_found_in_listpays_settles_the_record(tmp_path: Path) -> None:
    service = make(
        tmp_path,
        {
            "listsendpays": {
                "payments": [
                    {"status": "failed", "amount_sent_msat": 10_001},
                    {"status": "complete", "amount_sent_msat": 10_002},
                ]
            },
            "listpays": {"pays": [{"status": "complete", "preimage": "aa" * 32}]},
        },
    )
    service.store.begin_payment(
        key="withdraw-1",
        member="m1",
        request_hash="x",
        bolt11=BOLT11,
        payment_hash=HASH,
        destination=None,
        amount_msat=10_000,
        max_fee_msat=1_050,
    )
    asyncio.run(service.reconcile_pending())
    record = service.store.payment("withdraw-1")
    assert record is not None
    assert (record.state, record.preimage, record.amount_sent_msat) == (
        "complete",
        "aa" * 32,
        10_002,
    )


def test_invoices_refused_for_another_network_or_past_expiry(tmp_path: Path) -> None:
    service = make(tmp_path, {})
    rpc = rpc_of(service)
    rpc.answers["decode"] = {**rpc.answers["decode"], "currency": "bc"}
    with pytest.raises(RequestRefusedError, match="this node is on regtest"):
        pay(service)
    rpc.answers["decode"] = {**rpc.answers["decode"], "currency": "bcrt", "created_at": 1}
    with pytest.raises(RequestRefusedError, match="expired"):
        pay(service)
    assert service.store.payment("withdraw-1") is None  # nothing recorded, nothing sent


def test_the_same_invoice_key_returns_the_existing_invoice(tmp_path: Path) -> None:
    existing = {
        "label": "m1:deposit-01",
        "bolt11": BOLT11,
        "payment_hash": HASH,
        "amount_msat": 5_000,
        "description": "top up",
        "status": "unpaid",
        "expires_at": 1,
        "created_index": 7,
    }
    service = make(
        tmp_path,
        {
            "invoice": LightningRpcError("invoice", {"code": 900, "message": "Duplicate label"}),
            "listinvoices": {"invoices": [existing]},
        },
    )

    def create(amount: int) -> tuple[dict[str, Any], bool]:
        return asyncio.run(
            service.create_invoice(
                member="m1",
                idempotency_key="deposit-01",
                amount_msat=amount,
                description="top up",
                expiry=600,
            )
        )

    invoice, replayed = create(5_000)
    assert replayed and invoice["bolt11"] == BOLT11 and invoice["member"] == "m1"
    with pytest.raises(RequestRefusedError) as refused:
        create(6_000)
    assert refused.value.status == 409


def test_lightningd_gone_during_the_call_leaves_the_payment_to_the_reconciler(
    tmp_path: Path,
) -> None:
    """The socket broke mid-call: the request may have reached lightningd. The caller gets the
    error (503 from the API), the record stays pending and is settled from listpays later."""
    service = make(
        tmp_path,
        {"xpay": LightningUnavailableError("xpay: Connection to RPC server lost.")},
    )
    with pytest.raises(LightningUnavailableError):
        pay(service)
    assert service.store.payment("withdraw-1").state == "pending"  # type: ignore[union-attr]
    rpc_of(service).answers.update(
        {
            "listsendpays": {"payments": [{"status": "complete", "amount_sent_msat": 10_002}]},
            "listpays": {"pays": [{"status": "complete", "preimage": "aa" * 32}]},
        }
    )
    asyncio.run(service.reconcile_pending())
    record = service.store.payment("withdraw-1")
    assert record is not None and record.state == "complete"
    assert rpc_of(service).count("xpay") == 1
