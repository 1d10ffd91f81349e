"""What the owner dashboard needs of the exchange's owner API: the signed-in owner's name in
every audit actor (``X-Acting-Owner``), refused when malformed, and the audit log filtered by
action (with the member filter and paging it already had)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from scnode_exchange.api.app import create_app
from tests.unit.apps.exchange.api.node import Node, make_settings


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    settings, owner_key = make_settings(tmp_path, f"sqlite:///{tmp_path / 'exchange.sqlite3'}")
    with TestClient(create_app(settings)) as client:
        yield Node(client, owner_key, settings)


def test_the_acting_owner_is_named_in_the_audit_and_the_journal(node: Node) -> None:
    client = node.client
    member_id, _ = node.member("alice")
    acting = {**node.owner, "X-Acting-Owner": "olivia"}
    frozen = client.post(
        f"/api/owner/members/{member_id}/freeze", headers=acting, json={"reason": "lost phone"}
    )
    assert frozen.status_code == 200 and frozen.json()["frozen"] is True
    adjusted = client.post(
        f"/api/owner/members/{member_id}/adjustments",
        headers=acting,
        json={"asset": "SATS", "amount": 700, "reason": "meetup", "idempotency_key": "k-123456"},
    )
    assert adjusted.status_code == 201
    rows = client.get(f"/api/owner/audit?member_id={member_id}", headers=node.owner).json()
    actors = {row["action"]: row["actor"] for row in rows["items"]}
    assert actors["freeze"].endswith(":test-owner by olivia")
    assert actors["adjust"].endswith(":test-owner by olivia")
    # without the header the key alone is the actor (owner tools, scripts)
    assert not actors["create_member"].endswith("olivia")


@pytest.mark.parametrize("bad", ["", "a b", "x" * 49, "olivia;drop"])
def test_a_malformed_acting_owner_is_refused_and_nothing_happens(node: Node, bad: str) -> None:
    member_id, _ = node.member("bob")
    reply = node.client.post(
        f"/api/owner/members/{member_id}/freeze",
        headers={**node.owner, "X-Acting-Owner": bad},
        json={"reason": "should not happen"},
    )
    assert reply.status_code == 422
    detail = node.client.get(f"/api/owner/members/{member_id}", headers=node.owner).json()
    assert detail["frozen"] is False


def test_the_audit_log_filters_by_action_and_pages(node: Node) -> None:
    ids = [node.member(handle)[0] for handle in ("m1", "m2", "m3")]
    for member_id in ids:
        node.client.post(
            f"/api/owner/members/{member_id}/freeze", headers=node.owner, json={"reason": "test"}
        )
    url = "/api/owner/audit?action=freeze&limit=2"
    first = node.client.get(url, headers=node.owner).json()
    assert [r["member_id"] for r in first["items"]] == [ids[2], ids[1]]
    assert {r["action"] for r in first["items"]} == {"freeze"}
    rest = node.client.get(f"{url}&before_id={first['next_before_id']}", headers=node.owner)
    assert [r["member_id"] for r in rest.json()["items"]] == [ids[0]]
    created = node.client.get(
        f"/api/owner/audit?action=create_member&member_id={ids[1]}", headers=node.owner
    ).json()
    assert [r["member_id"] for r in created["items"]] == [ids[1]]
