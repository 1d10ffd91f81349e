"""Lightning payments on the exchange database (SQLite, and PostgreSQL when configured): the
fee reserve, a result recorded once, the node bearing a fee above the limit, refunds, and an
internal settlement that the deposit watcher can never credit a second time."""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.api.app import create_app
from scnode_exchange.ledger import FEES, NODE_WALLET, Ledger
from scnode_exchange.ledger.audit import verify
from scnode_exchange.ledger.models import JournalEntry
from scnode_exchange.lightning.bolt11 import DecodedInvoice
from scnode_exchange.lightning.payments import (
    LightningPaymentService,
    PaymentConflictError,
    PaymentPolicy,
    PaymentRefusedError,
)
from scnode_exchange.lightning.service import LightningDepositService
from tests.unit.apps.exchange.api.node import Node, make_settings


def invoice(amount_msat: int | None, payment_hash: str | None = None) -> DecodedInvoice:
    return DecodedInvoice(
        bolt11="lnbcrt1" + secrets.token_hex(20),
        currency="bcrt",
        payment_hash=payment_hash or secrets.token_hex(32),
        amount_msat=amount_msat,
        created_at=int(time.time()),
        expiry=3600,
        payee="02" + "11" * 32,
        description="test",
    )


def funded(sessions: sessionmaker[Session], handle: str, sats: int) -> int:
    with sessions.begin() as session:
        ledger = Ledger(session)
        member = ledger.create_member(handle).id
        if sats:
            ledger.transfer(
                "deposit",
                "test funds",
                ledger.system_account(NODE_WALLET, "SATS"),
                ledger.member_account(member, "SATS"),
                sats,
            )
        return member


def sats(sessions: sessionmaker[Session], member_id: int) -> tuple[int, int]:
    with sessions() as session:
        account = Ledger(session).member_account(member_id, "SATS")
        return account.balance, account.reserved


def system(sessions: sessionmaker[Session], name: str) -> int:
    with sessions() as session:
        return Ledger(session).system_account(name, "SATS").balance


def audited(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        report = verify(session)
    assert report.ok, report.problems


def test_the_fee_reserve_is_the_floor_or_the_ppm_rounded_up() -> None:
    policy = PaymentPolicy(fee_floor_sats=10, fee_ppm=5_000)
    assert policy.max_fee(1_000) == 10  # 5 sats by ppm: the floor
    assert policy.max_fee(100_000) == 500
    assert policy.max_fee(100_001) == 501  # 500.005 rounded up


def test_a_result_is_recorded_once_at_the_actual_fee(sessions: sessionmaker[Session]) -> None:
    service = LightningPaymentService(sessions, PaymentPolicy(fee_floor_sats=10, fee_ppm=5_000))
    alice = funded(sessions, "alice", 200_000)
    wallet_before = system(sessions, NODE_WALLET)
    made = service.request_payment(alice, "pay-000001", invoice(100_000_500), "regtest")
    assert (made.state, made.amount_sats, made.max_fee_sats) == ("reserved", 100_001, 501)
    assert sats(sessions, alice) == (200_000, 100_502)
    claimed = service.claim_for_sending(made.id)
    assert claimed is not None and claimed.send_key == f"lnpay-{made.id:06d}"
    assert service.claim_for_sending(made.id) is None  # a second worker gets nothing
    service.record_api_state(made.id, "pending")
    assert service.get(made.id).state == "sending"
    done = service.record_complete(made.id, fee_msat=1_001, preimage="00" * 32)
    again = service.record_complete(made.id, fee_msat=1_001, preimage="00" * 32)
    assert done.fee_sats == again.fee_sats == 2  # 1,001 msat rounded up
    assert sats(sessions, alice) == (200_000 - 100_001 - 2, 0)
    assert system(sessions, NODE_WALLET) - wallet_before == 100_003
    with pytest.raises(PaymentConflictError):
        service.record_failure(made.id, "too late")
    with sessions() as session:
        refs = session.scalars(
            select(JournalEntry.reference).where(JournalEntry.reference.like("lnpay:%"))
        ).all()
    assert refs == [f"lnpay:{made.id}:settle"]
    audited(sessions)


def test_a_fee_above_the_limit_is_borne_by_the_node(sessions: sessionmaker[Session]) -> None:
    service = LightningPaymentService(sessions, PaymentPolicy(fee_floor_sats=10, fee_ppm=0))
    bob = funded(sessions, "bob", 50_000)
    fees_before = system(sessions, FEES)
    made = service.request_payment(bob, "pay-000002", invoice(20_000_000), "regtest")
    service.claim_for_sending(made.id)
    done = service.record_complete(made.id, fee_msat=25_000, preimage=None)
    assert done.fee_sats == 10  # the reserve is the most a member pays
    assert sats(sessions, bob) == (50_000 - 20_010, 0)
    assert system(sessions, FEES) - fees_before == -15
    audited(sessions)


def test_a_failure_refunds_and_the_invoice_may_be_paid_again(
    sessions: sessionmaker[Session],
) -> None:
    service = LightningPaymentService(sessions)
    carol = funded(sessions, "carol", 50_000)
    target = invoice(10_000_000)
    made = service.request_payment(carol, "pay-000003", target, "regtest")
    with pytest.raises(PaymentConflictError):  # the same invoice while it is in flight
        service.request_payment(carol, "pay-000004", target, "regtest")
    service.claim_for_sending(made.id)
    service.record_failure(made.id, "no route")
    service.record_failure(made.id, "no route")
    assert sats(sessions, carol) == (50_000, 0)
    retry = service.request_payment(carol, "pay-000005", target, "regtest")
    assert retry.state == "reserved"
    audited(sessions)


def test_refusals_write_nothing(sessions: sessionmaker[Session]) -> None:
    service = LightningPaymentService(
        sessions, PaymentPolicy(max_sats=30_000, daily_limit_sats=40_000)
    )
    dan = funded(sessions, "dan", 100_000)
    for bad, network, code in (
        (invoice(None), "regtest", "zero_amount"),
        (invoice(1_000_000), "bitcoin", "wrong_network"),
        (invoice(30_001_000), "regtest", "above_maximum"),
    ):
        with pytest.raises(PaymentRefusedError) as refused:
            service.request_payment(dan, "pay-" + secrets.token_hex(4), bad, network)
        assert refused.value.code == code
    service.request_payment(dan, "pay-000006", invoice(25_000_000), "regtest")
    with pytest.raises(PaymentRefusedError) as refused:
        service.request_payment(dan, "pay-000007", invoice(20_000_000), "regtest")
    assert refused.value.code == "daily_limit"
    assert len(service.list_payments(member_id=dan)) == 1


def test_an_internal_payment_is_credited_once_whichever_way_it_comes(
    sessions: sessionmaker[Session],
) -> None:
    service = LightningPaymentService(sessions)
    deposits = LightningDepositService(sessions)
    erin = funded(sessions, "erin", 80_000)
    fred = funded(sessions, "fred", 0)
    payment_hash = secrets.token_hex(32)
    bolt11 = "lnbcrt250u1" + secrets.token_hex(20)
    made = {"payment_hash": payment_hash, "bolt11": bolt11, "expires_at": 2_000_000_000}
    deposits.record(fred, "deposit-0001", made, 25_000)
    forged = invoice(25_000_000, payment_hash)  # the hash of fred's invoice, another bolt11
    with pytest.raises(PaymentRefusedError) as mismatch:
        service.request_payment(erin, "pay-000009", forged, "regtest")
    assert mismatch.value.code == "invoice_mismatch"
    genuine = replace(forged, bolt11=bolt11)
    with pytest.raises(PaymentRefusedError) as self_pay:
        service.request_payment(fred, "pay-000010", genuine, "regtest")
    assert self_pay.value.code == "own_invoice"
    paid = service.request_payment(erin, "pay-000011", genuine, "regtest")
    assert (paid.kind, paid.state, paid.fee_sats) == ("internal", "complete", 0)
    assert sats(sessions, erin) == (55_000, 0)
    assert sats(sessions, fred) == (25_000, 0)
    # lightningd later reports it paid (or the watcher replays): nothing more is credited
    credit = deposits.credit(
        {
            "payment_hash": payment_hash,
            "label": f"{fred}:deposit-0001",
            "amount_msat": 25_000_000,
            "amount_received_msat": 25_000_000,
        }
    )
    assert not credit.credited
    assert sats(sessions, fred) == (25_000, 0)
    with pytest.raises(PaymentConflictError):
        service.request_payment(erin, "pay-000012", genuine, "regtest")
    audited(sessions)


def test_payment_ids_and_cursors_beyond_a_database_integer_are_bad_input(tmp_path: Path) -> None:
    """Found by fuzzing the sibling withdrawal route: a negative 64-bit overflow was a 500."""
    settings, owner_key = make_settings(tmp_path, f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with TestClient(create_app(settings)) as client:
        _, alice = Node(client, owner_key, settings).member("alice", sats=1_000)
        huge = "18446744073709551615"
        for path in (
            f"/v1/lightning/payments?before=-{huge}",
            f"/v1/lightning/payments?before={huge}",
            f"/v1/lightning/payments/-{huge}",
            "/v1/lightning/payments/0",
        ):
            assert client.get(path, headers=alice).status_code == 422, path
        assert client.get("/v1/lightning/payments/99", headers=alice).status_code == 404
        # without Lightning configured: reads answer, new payments are 503 (not configured)
        assert client.get("/v1/lightning/payments", headers=alice).json()["payments"] == []
        made = client.post(
            "/v1/lightning/payments",
            json={"bolt11": "lnbcrt1xyz", "idempotency_key": "abcdefgh"},
            headers=alice,
        )
        assert made.status_code == 503
