"""The member's Lightning deposit routes with a stand-in Lightning API client."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.chainclient import ChainApiRetryableError
from scnode_exchange.ledger import Ledger
from scnode_exchange.lightning import LightningApiClient, LightningDeposits
from scnode_exchange.lightning.api import build_router


class FakeLightningApi(LightningApiClient):
    """Answers like the Lightning API: one invoice per member and key."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9", "scnk_00000000_" + "A" * 43)
        self.invoices: dict[str, dict[str, Any]] = {}
        self.down = False

    async def create_invoice(self, **kw: Any) -> dict[str, Any]:
        if self.down:
            raise ChainApiRetryableError("cannot reach", 503)
        label = f"{kw['member']}:{kw['idempotency_key']}"
        n = len(self.invoices)
        return self.invoices.setdefault(
            label,
            {
                "label": label,
                "payment_hash": f"{n:064x}",
                "bolt11": f"lnbcrt{n}",
                "amount_msat": kw["amount_msat"],
                "description": kw["description"],
                "expires_at": 2_000_000_000,
                "status": "unpaid",
            },
        )


class Who:
    def __init__(self, member_id: int) -> None:
        self.member_id = member_id


def test_a_member_gets_one_invoice_per_key_and_sees_only_their_own(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        alice = Ledger(session).create_member("alice").id
        bob = Ledger(session).create_member("bob").id
    fake = FakeLightningApi()
    deposits = LightningDeposits(sessions, fake, max_invoice_sats=50_000)
    current = {"id": alice}
    app = FastAPI()
    app.include_router(build_router(lambda: Who(current["id"]), deposits))
    client = TestClient(app)
    body = {"amount_sats": 20_000, "idempotency_key": "deposit-0001", "description": "top up"}
    first = client.post("/v1/lightning/invoices", json=body)
    assert first.status_code == 201, first.text
    again = client.post("/v1/lightning/invoices", json=body)
    assert again.status_code == 200
    assert again.json()["bolt11"] == first.json()["bolt11"]
    assert (
        client.post("/v1/lightning/invoices", json={**body, "amount_sats": 60_000}).status_code
        == 422
    )
    fake.down = True
    down = client.post("/v1/lightning/invoices", json={**body, "idempotency_key": "deposit-02"})
    assert (down.status_code, down.headers["retry-after"]) == (503, "10")
    listed = client.get("/v1/lightning/invoices").json()["invoices"]
    assert [(i["amount_sats"], i["state"]) for i in listed] == [(20_000, "unpaid")]
    current["id"] = bob
    assert client.get("/v1/lightning/invoices").json()["invoices"] == []
