"""Owner operations through the API: adjustments as journal entries against owner equity,
freeze/unfreeze, and the append-only audit log."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import select

from scnode_core.apikeys import ApiKeyStore, generate
from scnode_exchange.ledger import OWNER_EQUITY, JournalEntry, Ledger, verify
from scnode_exchange.owner import OwnerAuditEntry
from tests.unit.apps.exchange.api.node import Node


def test_adjust_freeze_unfreeze_and_audit(node: Node) -> None:
    client, owner = node.client, node.owner
    member_id, alice = node.member("alice")
    body = {
        "asset": "SATS",
        "amount": 5000,
        "reason": "cash paid in at the meetup",
        "idempotency_key": "meetup-2026-11-26-alice",
    }
    first = client.post(f"/api/owner/members/{member_id}/adjustments", json=body, headers=owner)
    assert first.status_code == 201 and first.json()["created"] is True
    again = client.post(f"/api/owner/members/{member_id}/adjustments", json=body, headers=owner)
    assert again.json() == {**first.json(), "created": False}  # retried: nothing done twice
    assert node.balance(alice, "SATS")["balance"] == 5000
    conflict = client.post(
        f"/api/owner/members/{member_id}/adjustments", json={**body, "amount": 6000}, headers=owner
    )
    assert conflict.status_code == 409
    overdraw = client.post(
        f"/api/owner/members/{member_id}/adjustments",
        headers=owner,
        json={
            "asset": "SATS",
            "amount": -5001,
            "reason": "too much",
            "idempotency_key": "debit-1x",
        },
    )
    assert overdraw.status_code == 409 and "available" in overdraw.json()["detail"]
    missing = client.post(
        "/api/owner/members/999999/adjustments",
        headers=owner,
        json={**body, "idempotency_key": "nobody-123"},
    )
    assert missing.status_code == 404

    frozen = client.post(
        f"/api/owner/members/{member_id}/freeze", headers=owner, json={"reason": "suspicious login"}
    )
    assert frozen.json()["frozen"] is True
    order = client.post(
        "/api/orders", headers=alice, json={"side": "buy", "price": 100, "quantity": 1}
    ).json()
    assert (order["status"], order["reject_reason"]) == ("rejected", "member_frozen")
    # the owner can still move a frozen member's funds (it is the owner acting)
    node.adjust(member_id, "SATS", -1000)
    client.post(
        f"/api/owner/members/{member_id}/unfreeze",
        headers=owner,
        json={"reason": "member confirmed by phone"},
    )
    order = client.post(
        "/api/orders", headers=alice, json={"side": "buy", "price": 100, "quantity": 1}
    ).json()
    assert order["status"] == "open"

    audit = client.get(f"/api/owner/audit?member_id={member_id}", headers=owner).json()["items"]
    assert [(a["action"], a["reason"]) for a in audit] == [
        ("unfreeze", "member confirmed by phone"),
        ("adjust", "test funding"),
        ("freeze", "suspicious login"),
        ("adjust", "cash paid in at the meetup"),
        ("create_member", "test member"),
    ]
    assert all(
        a["actor"].startswith("owner:") and a["actor"].endswith(":test-owner") for a in audit
    )
    adjust_row = audit[3]
    assert adjust_row["details"]["amount"] == 5000 and adjust_row["entry_id"] is not None
    page = client.get(f"/api/owner/audit?member_id={member_id}&limit=2", headers=owner).json()
    assert [a["id"] for a in page["items"]] == [a["id"] for a in audit[:2]]
    assert page["next_before_id"] == audit[1]["id"]

    rt = client.app.state.runtime  # type: ignore[attr-defined]
    with rt.sessions.begin() as session:
        entry = session.get(JournalEntry, adjust_row["entry_id"])
        assert entry is not None and entry.kind == "owner_adjustment"
        assert entry.actor == adjust_row["actor"]
        equity = Ledger(session).system_account(OWNER_EQUITY, "SATS")
        assert equity.balance == -(5000 - 1000)  # credit out of owner equity, debit back
        assert verify(session).ok
    # the audit log is append-only: the ORM refuses changes and deletes
    with pytest.raises(RuntimeError, match="append-only"), rt.sessions.begin() as session:
        row = session.scalar(select(OwnerAuditEntry).limit(1))
        assert row is not None
        row.reason = "rewritten"
    with pytest.raises(RuntimeError, match="append-only"), rt.sessions.begin() as session:
        row = session.scalar(select(OwnerAuditEntry).limit(1))
        session.delete(row)


def test_owner_member_list_and_duplicate_handle(lite_node: Node) -> None:
    member_id, _ = lite_node.member("alice", sats=10)
    reply = lite_node.client.post(
        "/api/owner/members", headers=lite_node.owner, json={"handle": "alice", "reason": "again"}
    )
    assert reply.status_code == 409
    listed = lite_node.client.get("/api/owner/members", headers=lite_node.owner).json()
    assert [m["handle"] for m in listed] == ["alice"]
    detail = lite_node.client.get(f"/api/owner/members/{member_id}", headers=lite_node.owner).json()
    assert {b["asset"]: b["balance"] for b in detail["balances"]}["SATS"] == 10
    assert (
        lite_node.client.get("/api/owner/members/999999", headers=lite_node.owner).status_code
        == 404
    )


def test_owner_keys_rotate_without_restart(lite_node: Node) -> None:
    keys_file = lite_node.settings.owner_api_keys_file
    new = generate({"owner"}, "rotated")
    ApiKeyStore([new.record]).save(keys_file)
    os.utime(keys_file, (1, 1))  # a different mtime even within the clock's resolution
    assert lite_node.client.get("/api/owner/members", headers={"X-API-Key": new.token}).is_success
    assert lite_node.client.get("/api/owner/members", headers=lite_node.owner).status_code == 401
    keys_file.write_text("{not json")  # a broken file keeps the keys that worked
    os.utime(keys_file, (2, 2))
    assert lite_node.client.get("/api/owner/members", headers={"X-API-Key": new.token}).is_success
