"""Members pay Lightning invoices through the exchange (issue 8 item 3): the exchange process,
a real Lightning API process and the simnet lightningd with its channel to the simulated SC
Cluster hub. Paid once and charged the actual fee; a failure refunded; the same key answers
the same payment; limits and invalid invoices refused; another member's invoice settled in
the ledger without touching the channel; and a kill -9 of the exchange between "payment
sent" and "result recorded" (and just before sending) debits once and pays once."""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bitcoin.wallet import CKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from scnode_exchange.db import make_engine
from scnode_exchange.ledger import JournalEntry
from scnode_exchange.ledger.audit import verify
from simnet.lightning import bolt11 as simnet_bolt11
from tests.integration.exchange_lightning_pay.harness import (
    Exchange,
    PayExchangeProcess,
    channel_local_msat,
    completed_parts,
    exchange_settings,
    hub_fee,
)
from tests.integration.lightning_api.handle import LightningApi, LightningPair

FUNDS = 1_000_000


def key() -> str:
    return "pay-" + secrets.token_hex(6)


def sats_up(msat: int) -> int:
    return -(-msat // 1000)


@pytest.fixture(scope="module")
def module_exchange(
    ln_api: LightningApi, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Exchange]:
    """One exchange for the tests that neither kill it nor need other settings."""
    workdir = tmp_path_factory.mktemp("exchange")
    settings = exchange_settings(
        ln_api, pay_max_sats=400_000, pay_daily_limit_sats=600_000, pay_fee_floor_sats=5
    )
    process = PayExchangeProcess(workdir, f"sqlite:///{workdir / 'exchange.sqlite3'}", settings)
    process.other_logs.append(ln_api.workdir / "api.log")
    process.start()
    try:
        yield Exchange(process, ln_api)
    finally:
        process.stop()


def pay(ex: Exchange, handle: str, bolt11: str, idempotency_key: str) -> Any:
    with ex.client(handle) as client:
        return client.post(
            "/v1/lightning/payments", json={"bolt11": bolt11, "idempotency_key": idempotency_key}
        )


def test_a_payment_is_sent_once_and_charged_the_actual_fee(
    shared_pair: LightningPair, module_exchange: Exchange
) -> None:
    node, hub = shared_pair
    ex = module_exchange
    ex.add_member("alice", FUNDS)
    amount_msat = 100_000_000
    outside = hub.make_outside_invoice(amount_msat, "coffee beans")
    local_before = channel_local_msat(node)
    with ex.client("alice") as client:
        quote = client.post("/v1/lightning/payments/quote", json={"bolt11": outside["bolt11"]})
        assert quote.status_code == 200, quote.text
        # the fee reserve: max(floor 5, 100,000 sats x 5,000 ppm) = 500 sats
        assert quote.json()["max_total_sats"] == 100_500
        assert quote.json()["internal"] is False
    k = key()
    first = pay(ex, "alice", outside["bolt11"], k)
    assert first.status_code == 201, first.text
    payment = first.json()
    assert payment["amount_sats"] == 100_000 and payment["max_fee_sats"] == 500
    assert payment["kind"] == "external"
    done = ex.wait_outcome("alice", payment["id"])
    assert done["state"] == "complete", done
    fee_sats = sats_up(hub_fee(amount_msat))
    assert done["fee_sats"] == fee_sats
    assert done["preimage"] == outside["preimage"]
    # the member: debited amount + actual fee, the unused reserve back, nothing held
    sats = ex.sats("alice")
    assert sats["balance"] == FUNDS - 100_000 - fee_sats
    assert sats["reserved"] == 0
    # the same key again: the same payment, nothing new
    again = pay(ex, "alice", outside["bolt11"], k)
    assert again.status_code == 200
    assert again.json()["id"] == payment["id"] and again.json()["replayed"] is True
    # the same invoice under another key: refused (already paid)
    other = pay(ex, "alice", outside["bolt11"], key())
    assert other.status_code == 409, other.text
    # the key with another invoice: refused
    second = hub.make_outside_invoice(1_000_000)
    assert pay(ex, "alice", second["bolt11"], k).status_code == 409
    # the stand-in paid once; the channel moved by amount + fee
    assert len(completed_parts(node, outside["payment_hash"])) == 1
    assert local_before - channel_local_msat(node) == amount_msat + hub_fee(amount_msat)
    assert ex.sats("alice")["balance"] == FUNDS - 100_000 - fee_sats
    with ex.client("alice") as client:
        listed = client.get("/v1/lightning/payments").json()["payments"]
    assert [p["id"] for p in listed] == [payment["id"]]


def test_a_failed_payment_is_refunded(
    shared_pair: LightningPair, module_exchange: Exchange
) -> None:
    node, hub = shared_pair
    ex = module_exchange
    ex.add_member("bruno", FUNDS)
    outside = hub.make_outside_invoice(30_000_000)
    node.fail_next_payment(205)  # xpay: no route, nothing sent
    made = pay(ex, "bruno", outside["bolt11"], key())
    assert made.status_code == 201, made.text
    done = ex.wait_outcome("bruno", made.json()["id"])
    assert done["state"] == "failed", done
    assert done["failure_reason"]
    sats = ex.sats("bruno")
    assert (sats["balance"], sats["reserved"]) == (FUNDS, 0)
    assert completed_parts(node, outside["payment_hash"]) == []
    # a failed payment frees the invoice: a new key may pay it
    retry = pay(ex, "bruno", outside["bolt11"], key())
    assert retry.status_code == 201, retry.text
    assert ex.wait_outcome("bruno", retry.json()["id"])["state"] == "complete"
    assert len(completed_parts(node, outside["payment_hash"])) == 1


@pytest.mark.parametrize("then", ["complete", "fail"])
def test_a_pending_payment_waits_for_lightningds_outcome(
    shared_pair: LightningPair, module_exchange: Exchange, then: str
) -> None:
    """pay answers an error while a part is still held (PROTOCOLS.md): the Lightning API
    reports the payment pending; the exchange keeps it sending — neither settled nor refunded
    — until lightningd's lists decide."""
    node, hub = shared_pair
    ex = module_exchange
    handle = f"hana-{then}"
    ex.add_member(handle, FUNDS)
    outside = hub.make_outside_invoice(40_000_000)
    node.fail_next_payment(210, pending_seconds=6, then=then)
    made = pay(ex, handle, outside["bolt11"], key())
    assert made.status_code == 201, made.text
    ex.process.wait_for(
        "the payment sent and pending",
        lambda: ex.payment(handle, made.json()["id"])["state"] == "sending",
        30,
    )
    assert ex.sats(handle)["reserved"] == 40_000 + 200  # amount + fee reserve, still held
    done = ex.wait_outcome(handle, made.json()["id"], timeout=60)
    sats = ex.sats(handle)
    if then == "complete":
        assert done["state"] == "complete", done
        assert sats["balance"] == FUNDS - 40_000 - sats_up(hub_fee(40_000_000))
        assert len(completed_parts(node, outside["payment_hash"])) == 1
    else:
        assert done["state"] == "failed", done
        assert sats["balance"] == FUNDS
        assert completed_parts(node, outside["payment_hash"]) == []
    assert sats["reserved"] == 0


def _foreign_invoice(
    currency: str, amount_msat: int | None, age: int = 0, expiry: int = 3600
) -> str:
    """A validly signed invoice of some other node (test key made here)."""
    invoice = simnet_bolt11.Invoice(
        currency=currency,
        created_at=int(time.time()) - age,
        payment_hash=os.urandom(32),
        payment_secret=os.urandom(32),
        amount_msat=amount_msat,
        description="elsewhere",
        expiry=expiry,
    )
    return simnet_bolt11.encode(invoice, CKey(os.urandom(32)))


def test_limits_and_invalid_invoices_are_refused_with_a_reason(
    shared_pair: LightningPair, module_exchange: Exchange
) -> None:
    _node, hub = shared_pair
    ex = module_exchange
    ex.add_member("carla", FUNDS)
    ex.add_member("dora", 50_000)
    cases = {
        "zero_amount": hub.make_outside_invoice(None)["bolt11"],
        "wrong_network": _foreign_invoice("bc", 10_000_000),
        "expired": _foreign_invoice("bcrt", 10_000_000, age=7200, expiry=600),
        "invalid_invoice": "lnbcrt1" + "q" * 60,
        "above_maximum": hub.make_outside_invoice(400_001_000)["bolt11"],
    }
    for code, bolt11 in cases.items():
        refused = pay(ex, "carla", bolt11, key())
        assert refused.status_code == 422, (code, refused.text)
        assert refused.json()["code"] == code, (code, refused.text)
    # the 24-hour limit (600,000): 350,000 goes, another 300,000 is refused, 250,000 goes
    first = pay(ex, "carla", hub.make_outside_invoice(350_000_000)["bolt11"], key())
    assert first.status_code == 201, first.text
    over = pay(ex, "carla", hub.make_outside_invoice(300_000_000)["bolt11"], key())
    assert over.status_code == 422 and over.json()["code"] == "daily_limit", over.text
    within = pay(ex, "carla", hub.make_outside_invoice(250_000_000)["bolt11"], key())
    assert within.status_code == 201, within.text
    # funds: the amount plus the fee reserve must be available
    poor = pay(ex, "dora", hub.make_outside_invoice(49_990_000)["bolt11"], key())
    assert poor.status_code == 422 and poor.json()["code"] == "insufficient_funds", poor.text
    no_key = ex.client("carla").post(
        "/v1/lightning/payments", json={"bolt11": hub.make_outside_invoice(1000)["bolt11"]}
    )
    assert no_key.status_code == 422
    for made in (first, within):
        assert ex.wait_outcome("carla", made.json()["id"])["state"] == "complete"
    # nothing refused was reserved or sent
    dora = ex.sats("dora")
    assert (dora["balance"], dora["reserved"]) == (50_000, 0)
    assert ex.sats("carla")["reserved"] == 0


def test_another_members_invoice_settles_inside_the_ledger(
    shared_pair: LightningPair, module_exchange: Exchange
) -> None:
    node, _hub = shared_pair
    ex = module_exchange
    ex.add_member("erik", FUNDS)
    ex.add_member("fiona", 0)
    with ex.client("fiona") as client:
        made = client.post(
            "/v1/lightning/invoices",
            json={"amount_sats": 25_000, "idempotency_key": key(), "description": "rent"},
        )
        assert made.status_code == 201, made.text
        own = client.post(
            "/v1/lightning/invoices", json={"amount_sats": 1_000, "idempotency_key": key()}
        ).json()
    invoice = made.json()
    local_before = channel_local_msat(node)
    with ex.client("erik") as client:
        quote = client.post("/v1/lightning/payments/quote", json={"bolt11": invoice["bolt11"]})
        assert quote.json()["internal"] is True and quote.json()["max_fee_sats"] == 0
    paid = pay(ex, "erik", invoice["bolt11"], key())
    assert paid.status_code == 201, paid.text
    assert paid.json()["kind"] == "internal" and paid.json()["state"] == "complete"
    assert paid.json()["fee_sats"] == 0
    assert ex.sats("erik")["balance"] == FUNDS - 25_000
    assert ex.sats("fiona")["balance"] == 25_000
    with ex.client("fiona") as client:
        rows = client.get("/v1/lightning/invoices").json()["invoices"]
    mine = next(r for r in rows if r["payment_hash"] == invoice["payment_hash"])
    assert (mine["state"], mine["credited_sats"]) == ("credited", 25_000)
    # paid twice: refused, and nothing moved again
    again = pay(ex, "erik", invoice["bolt11"], key())
    assert again.status_code == 409, again.text
    # a member's own invoice: refused
    self_pay = pay(ex, "fiona", own["bolt11"], key())
    assert self_pay.status_code == 422 and self_pay.json()["code"] == "own_invoice"
    # the channel and lightningd never saw it
    assert channel_local_msat(node) == local_before
    assert node.rpc.listsendpays(payment_hash=invoice["payment_hash"])["payments"] == []
    time.sleep(1.5)  # the deposit watcher runs too: it must not credit the invoice again
    assert ex.sats("fiona")["balance"] == 25_000
    assert ex.sats("erik")["balance"] == FUNDS - 25_000


def _without_crash_point(ex: Exchange) -> None:
    env = ex.process.env_file
    lines = []
    for line in env.read_text().splitlines():
        if line.startswith("SCNODE_EXCHANGE_LIGHTNING="):
            conf = json.loads(line.split("=", 1)[1].strip("'"))
            conf.pop("pay_crash_at")
            line = f"SCNODE_EXCHANGE_LIGHTNING='{json.dumps(conf)}'"
        lines.append(line)
    env.write_text("\n".join(lines) + "\n")


# the decisive crash point on both backends; the earlier one on SQLite (each case is three
# exchange starts: seconds each on a loaded machine)
KILL_CASES = [("sqlite", "after_send"), ("sqlite", "after_mark_sending")]
if os.environ.get("SCNODE_TEST_POSTGRES_URL"):
    KILL_CASES.append(("postgresql", "after_send"))


@pytest.mark.parametrize(("database_url", "crash_at"), KILL_CASES, indirect=["database_url"])
def test_a_kill_9_of_the_exchange_around_the_send_debits_once_and_pays_once(
    shared_pair: LightningPair,
    ln_api: LightningApi,
    start_exchange: Callable[..., Exchange],
    database_url: str,
    crash_at: str,
) -> None:
    node, hub = shared_pair
    ex = start_exchange(ln_api, database_url, pay_crash_at=crash_at)
    handle = f"gil-{crash_at}"
    ex.add_member(handle, FUNDS)
    amount_msat = 70_000_000
    outside = hub.make_outside_invoice(amount_msat, "kill -9")
    local_before = channel_local_msat(node)
    made = pay(ex, handle, outside["bolt11"], key())
    assert made.status_code == 201, made.text
    # the worker SIGKILLs its own process at the crash point: really killed, no clean-up
    proc = ex.process.proc
    assert proc is not None
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, ex.process.log_tail()
    if crash_at == "after_send":  # paid, but the exchange never recorded the result
        assert len(completed_parts(node, outside["payment_hash"])) == 1
    else:  # marked sending, never asked
        assert node.rpc.listsendpays(payment_hash=outside["payment_hash"])["payments"] == []
    _without_crash_point(ex)
    ex.process.start()
    ex.login(handle)
    done = ex.wait_outcome(handle, made.json()["id"])
    assert done["state"] == "complete", done
    fee_sats = sats_up(hub_fee(amount_msat))
    assert done["fee_sats"] == fee_sats
    sats = ex.sats(handle)
    assert (sats["balance"], sats["reserved"]) == (FUNDS - 70_000 - fee_sats, 0)
    # the stand-in paid once: one completed part, one Lightning API record, the channel
    # moved once
    assert len(completed_parts(node, outside["payment_hash"])) == 1
    assert local_before - channel_local_msat(node) == amount_msat + hub_fee(amount_msat)
    with ln_api.client() as client:
        records = client.get("/v1/payments", params={"limit": 500}).json()["payments"]
    assert [r["payment_hash"] for r in records].count(outside["payment_hash"]) == 1
    # the ledger: one settlement, every hold closed, books balanced
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            assert verify(session).ok, verify(session).problems
            settles = session.scalars(
                select(JournalEntry.reference).where(JournalEntry.reference.like("lnpay:%"))
            ).all()
    finally:
        engine.dispose()
    assert settles == [f"lnpay:{made.json()['id']}:settle"]
