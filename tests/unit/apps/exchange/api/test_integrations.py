"""The withdrawals and deposits packages inside the exchange app: their routes are mounted
with this app's auth, and owner actions on them land in the owner audit log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

# Both packages ship in the wheel: a broken import must fail here, never skip.
import scnode_exchange.deposits.api
import scnode_exchange.withdrawals.api  # noqa: F401
from scnode_exchange.api.app import create_app
from scnode_exchange.api.integrations import AuditedDeposits
from tests.unit.apps.exchange.api.node import Node, make_settings

ADDRESS = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"  # BIP-173 test vector


@pytest.fixture
def wnode(sqlite_url: str, tmp_path: Path) -> Iterator[Node]:
    # a chain API nobody listens on: requests wait for approval, sends never leave
    chains = {
        "bitcoin": {
            "asset": "SATS",
            "api_url": "http://127.0.0.1:9",
            "api_key": "scnk_00000000_" + "a" * 43,
        }
    }
    settings, key = make_settings(
        tmp_path, sqlite_url, chains=chains, withdrawal_approval_threshold=10_000
    )
    with TestClient(create_app(settings)) as client:
        yield Node(client, key, settings)


def test_withdrawal_approval_and_rejection_are_audited(wnode: Node) -> None:
    client = wnode.client
    member_id, alice = wnode.member("alice", sats=200_000)
    _, bob = wnode.member("bob")
    ids = []
    for key in ("first-withdrawal", "second-withdrawal"):
        reply = client.post(
            "/v1/withdrawals",
            headers=alice,
            json={"chain": "bitcoin", "address": ADDRESS, "amount": 50_000, "idempotency_key": key},
        )
        assert reply.status_code == 201, reply.text
        assert reply.json()["state"] == "awaiting_approval"
        ids.append(reply.json()["id"])
    # scoped like every member route: bob cannot see alice's withdrawal
    assert client.get(f"/v1/withdrawals/{ids[0]}", headers=bob).status_code == 404
    assert client.post(f"/v1/owner/withdrawals/{ids[0]}/approve", headers=alice).status_code == 403

    approved = client.post(f"/v1/owner/withdrawals/{ids[0]}/approve", headers=wnode.owner)
    assert approved.status_code == 200, approved.text
    rejected = client.post(
        f"/v1/owner/withdrawals/{ids[1]}/reject",
        headers=wnode.owner,
        json={"reason": "address not on file"},
    )
    assert rejected.status_code == 200, rejected.text
    audit = client.get(f"/api/owner/audit?member_id={member_id}", headers=wnode.owner).json()
    actions = [
        (a["action"], a["reason"], a["details"].get("withdrawal_id")) for a in audit["items"][:2]
    ]
    assert actions == [
        ("reject_withdrawal", "address not on file", ids[1]),
        ("approve_withdrawal", "approved", ids[0]),
    ]


def test_unified_history_lists_withdrawals_not_yet_final(wnode: Node) -> None:
    client = wnode.client
    _, alice = wnode.member("alice", sats=200_000)
    _, bob = wnode.member("bob", sats=200_000)
    waiting = client.post(
        "/v1/withdrawals",
        headers=alice,
        json={
            "chain": "bitcoin",
            "address": ADDRESS,
            "amount": 60_000,
            "idempotency_key": "wait-1",
        },
    )
    rejected = client.post(
        "/v1/withdrawals",
        headers=alice,
        json={
            "chain": "bitcoin",
            "address": ADDRESS,
            "amount": 70_000,
            "idempotency_key": "wait-2",
        },
    )
    client.post(
        f"/v1/owner/withdrawals/{rejected.json()['id']}/reject",
        headers=wnode.owner,
        json={"reason": "no"},
    )
    pending = client.get("/api/history", headers=alice).json()["pending"]
    assert [(p["kind"], p["id"], p["state"], p["amount"]) for p in pending] == [
        ("withdrawal", waiting.json()["id"], "awaiting_approval", 60_000)
    ]
    assert client.get("/api/history", headers=bob).json()["pending"] == []
    assert wnode.balance(alice, "SATS")["reserved"] == waiting.json()["total"]


def test_deposit_routes_are_mounted_and_scoped(wnode: Node) -> None:
    client = wnode.client
    _, alice = wnode.member("alice")
    assert client.get("/v1/deposits?chain=bitcoin").status_code == 401
    listed = client.get("/v1/deposits?chain=bitcoin", headers=alice)
    assert listed.status_code == 200, listed.text
    # the chain API is down: a clear 503, never a 500
    address = client.get("/v1/deposits/address?chain=bitcoin", headers=alice)
    assert address.status_code == 503 and address.headers["Retry-After"]
    assert client.get("/v1/owner/deposits/alerts", headers=alice).status_code == 403
    assert client.get("/v1/owner/deposits/alerts", headers=wnode.owner).status_code == 200
    service = client.app.state.deposit_service  # type: ignore[attr-defined]
    assert isinstance(service, AuditedDeposits)


def test_deposit_alert_resolution_is_audited(wnode: Node) -> None:
    member_id, _ = wnode.member("alice")
    rt = wnode.client.app.state.runtime  # type: ignore[attr-defined]

    class Resolver:
        def resolve_alert(self, alert_id: int, *, action: str, actor: str, reason: str) -> Any:
            return SimpleNamespace(
                member_id=member_id, deposit="bitcoin:ab:0", amount=7, asset="SATS"
            )

    AuditedDeposits(Resolver(), rt.sessions).resolve_alert(
        3, action="write_off", actor="owner:abcd1234", reason="coins never arrived"
    )
    audit = wnode.client.get(f"/api/owner/audit?member_id={member_id}", headers=wnode.owner)
    newest = audit.json()["items"][0]
    assert (newest["action"], newest["actor"], newest["reason"]) == (
        "deposit_alert_write_off",
        "owner:abcd1234",
        "coins never arrived",
    )
    assert newest["details"] == {
        "alert_id": 3,
        "deposit": "bitcoin:ab:0",
        "amount": 7,
        "asset": "SATS",
    }
