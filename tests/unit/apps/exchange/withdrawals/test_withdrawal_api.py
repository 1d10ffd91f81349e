"""The withdrawal routes with stand-in auth dependencies: member scoping, idempotency,
refusal codes, owner approval/rejection."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.withdrawals.api import build_router
from scnode_exchange.withdrawals.service import WithdrawalService
from tests.unit.apps.exchange.withdrawals.helpers import (
    FEE,
    address,
    balance,
    funded_member,
    make_service,
)


@pytest.fixture
def exchange_db_url(sqlite_db_url: str) -> str:
    """SQLite only (see conftest.py): the service runs on both in test_withdrawal_service.py."""
    return sqlite_db_url


@dataclass(frozen=True)
class FakeMember:
    member_id: int


@dataclass(frozen=True)
class FakeOwner:
    actor: str


def fake_member(x_member: str | None = Header(default=None)) -> FakeMember:
    if x_member is None:
        raise HTTPException(401, "no member")
    return FakeMember(int(x_member))


async def fake_owner(x_owner: str | None = Header(default=None)) -> FakeOwner:
    if x_owner is None:
        raise HTTPException(403, "not the owner")
    return FakeOwner(f"owner:{x_owner}")


class Woken:
    def __init__(self) -> None:
        self.count = 0

    def wake(self) -> None:
        self.count += 1


@pytest.fixture
def service(sessions: sessionmaker[Session]) -> WithdrawalService:
    return make_service(sessions)


@pytest.fixture
def client(service: WithdrawalService) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.withdrawal_service = service
    app.state.withdrawal_worker = Woken()
    app.include_router(build_router(fake_member, fake_owner))
    with TestClient(app) as test_client:
        yield test_client


def test_member_creates_lists_reads_and_cancels(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    alice = funded_member(sessions, "alice", 200_000)
    me = {"X-Member": str(alice)}
    body = {"chain": "bitcoin", "address": address(), "amount": 50_000}
    assert client.post("/v1/withdrawals", json=body).status_code == 401
    missing_key = client.post("/v1/withdrawals", json=body, headers=me)
    assert missing_key.status_code == 422
    assert missing_key.json()["code"] == "idempotency_key_required"

    created = client.post("/v1/withdrawals", json=body, headers={**me, "Idempotency-Key": "w1"})
    assert created.status_code == 201, created.text
    first = created.json()
    assert (first["state"], first["total"], first["replayed"]) == ("reserved", 50_000 + FEE, False)
    assert client.app.state.withdrawal_worker.count == 1  # type: ignore[attr-defined]
    again = client.post("/v1/withdrawals", json={**body, "idempotency_key": "w1"}, headers=me)
    assert again.status_code == 200
    assert (again.json()["id"], again.json()["replayed"]) == (first["id"], True)
    conflict = client.post(
        "/v1/withdrawals", json={**body, "amount": 50_001, "idempotency_key": "w1"}, headers=me
    )
    assert (conflict.status_code, conflict.json()["code"]) == (409, "idempotency_key_reused")

    one = client.get(f"/v1/withdrawals/{first['id']}", headers=me).json()
    assert [e["to_state"] for e in one["events"]] == ["requested", "reserved"]
    for i in range(3):
        client.post("/v1/withdrawals", json={**body, "amount": 1_000 + i,
                                             "idempotency_key": f"p{i}"}, headers=me)  # fmt: skip
    page = client.get("/v1/withdrawals?limit=2", headers=me).json()
    assert [w["amount"] for w in page["withdrawals"]] == [1_002, 1_001]
    rest = client.get(f"/v1/withdrawals?limit=2&before={page['next_before']}", headers=me).json()
    assert [w["amount"] for w in rest["withdrawals"]] == [1_000, 50_000]
    # a cursor outside the ids (found by fuzzing: -2**64 answered 500) is a 422 with a reason
    for bad in ("0", "-1", "-18446744073709551615"):
        assert client.get(f"/v1/withdrawals?before={bad}", headers=me).status_code == 422

    cancelled = client.post(f"/v1/withdrawals/{first['id']}/cancel", headers=me)
    assert (cancelled.status_code, cancelled.json()["state"]) == (200, "cancelled")
    twice = client.post(f"/v1/withdrawals/{first['id']}/cancel", headers=me)
    assert (twice.status_code, twice.json()["code"]) == (409, "invalid_state")
    assert balance(sessions, alice) == (200_000, 3_003 + 3 * FEE)


def test_refusals_answer_422_with_a_code(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    bob = funded_member(sessions, "bob", 10_000)
    me = {"X-Member": str(bob)}
    cases: list[tuple[dict[str, object], str]] = [
        ({"address": address(hrp="bc")}, "invalid_address"),
        ({"amount": 20_000}, "insufficient_funds"),
        ({"amount": 10}, "below_minimum"),
        ({"chain": "dogecoin"}, "unknown_chain"),
    ]
    for change, code in cases:
        body: dict[str, object] = {
            "chain": "bitcoin",
            "address": address(),
            "amount": 5_000,
            "idempotency_key": "x",
        }
        response = client.post("/v1/withdrawals", json={**body, **change}, headers=me)
        assert (response.status_code, response.json()["code"]) == (422, code), response.text
    assert client.get("/v1/withdrawals", headers=me).json()["withdrawals"] == []
    policy = client.get("/v1/withdrawals/policy", headers=me).json()
    assert policy["chains"]["bitcoin"]["fee"] == FEE


def test_members_cannot_see_or_cancel_each_others(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    alice = funded_member(sessions, "alice", 100_000)
    mallory = funded_member(sessions, "mallory", 100_000)
    body = {"chain": "bitcoin", "address": address(), "amount": 5_000, "idempotency_key": "a"}
    wid = client.post("/v1/withdrawals", json=body, headers={"X-Member": str(alice)}).json()["id"]
    theirs = {"X-Member": str(mallory)}
    missing = client.get("/v1/withdrawals/999999", headers=theirs)
    other = client.get(f"/v1/withdrawals/{wid}", headers=theirs)
    assert other.status_code == missing.status_code == 404
    assert other.json()["code"] == missing.json()["code"]
    assert client.post(f"/v1/withdrawals/{wid}/cancel", headers=theirs).status_code == 404
    assert client.get("/v1/withdrawals", headers=theirs).json()["withdrawals"] == []
    assert balance(sessions, alice) == (100_000, 5_000 + FEE)


def test_owner_lists_approves_and_rejects(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    carol = funded_member(sessions, "carol", 3_000_000)
    me = {"X-Member": str(carol)}
    owner = {"X-Owner": "key1"}
    ids = []
    for i in range(2):
        body = {"chain": "bitcoin", "address": address(), "amount": 600_000 + i,
                "idempotency_key": f"big{i}"}  # fmt: skip
        ids.append(client.post("/v1/withdrawals", json=body, headers=me).json()["id"])
    assert client.get("/v1/owner/withdrawals", headers=me).status_code == 403
    waiting = client.get("/v1/owner/withdrawals?state=awaiting_approval", headers=owner).json()
    assert sorted(w["id"] for w in waiting["withdrawals"]) == sorted(ids)
    assert client.get("/v1/owner/withdrawals?state=bogus", headers=owner).status_code == 422
    assert client.post(f"/v1/owner/withdrawals/{ids[0]}/approve", headers=me).status_code == 403

    woken = client.app.state.withdrawal_worker.count  # type: ignore[attr-defined]
    approved = client.post(f"/v1/owner/withdrawals/{ids[0]}/approve", headers=owner)
    assert (approved.status_code, approved.json()["state"]) == (200, "approved")
    assert client.app.state.withdrawal_worker.count == woken + 1  # type: ignore[attr-defined]
    rejected = client.post(
        f"/v1/owner/withdrawals/{ids[1]}/reject", json={"reason": "unknown address"}, headers=owner
    )
    assert rejected.json()["state"] == "rejected"
    assert rejected.json()["refunded"] is True
    detail = client.get(f"/v1/owner/withdrawals/{ids[1]}", headers=owner).json()
    assert detail["events"][-1]["actor"] == "owner:key1"
    assert detail["events"][-1]["detail"] == "unknown address"
    again = client.post(f"/v1/owner/withdrawals/{ids[1]}/approve", headers=owner)
    assert again.status_code == 409
    assert client.post("/v1/owner/withdrawals/424242/approve", headers=owner).status_code == 404
    assert balance(sessions, carol) == (3_000_000, 600_000 + FEE)
