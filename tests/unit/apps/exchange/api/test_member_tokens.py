"""Members' API tokens: made once with scopes, work against the member API within their
scopes only, die when revoked or expired, stay invisible to other members."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from scnode_exchange.tokens.models import MemberApiToken
from tests.unit.apps.exchange.api.node import Node


def _make(node: Node, headers: dict[str, str], scopes: list[str], **extra: Any) -> dict[str, Any]:
    reply = node.client.post(
        "/api/tokens", json={"name": "phone", "scopes": scopes, **extra}, headers=headers
    )
    assert reply.status_code == 201, reply.text
    made: dict[str, Any] = reply.json()
    return made


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_read_token_reads_but_cannot_trade_or_make_tokens(lite_node: Node) -> None:
    member_id, alice = lite_node.member("alice", sats=1_000_000)
    made = _make(lite_node, alice, ["read"])
    assert made["token"].startswith(f"scmt1.{made['id']}.")
    token = _bearer(made["token"])
    me = lite_node.client.get("/api/auth/me", headers=token)
    assert me.status_code == 200 and me.json()["member_id"] == member_id
    assert lite_node.client.get("/api/balances", headers=token).status_code == 200
    order = {"side": "buy", "type": "limit", "price": 100, "quantity": 1}
    refused = lite_node.client.post("/api/orders", json=order, headers=token)
    assert refused.status_code == 403 and "trade" in refused.json()["detail"]
    # a leaked token cannot mint more, list or revoke tokens
    assert lite_node.client.get("/api/tokens", headers=token).status_code == 403
    again = {"name": "x", "scopes": ["read"]}
    assert lite_node.client.post("/api/tokens", json=again, headers=token).status_code == 403
    listed = lite_node.client.get("/api/tokens", headers=alice).json()["tokens"]
    assert [t["name"] for t in listed] == ["phone"] and "token" not in listed[0]


def test_a_trade_token_trades_until_revoked(lite_node: Node) -> None:
    _, alice = lite_node.member("alice", sats=1_000_000)
    made = _make(lite_node, alice, ["read", "trade"])
    token = _bearer(made["token"])
    order = {"side": "buy", "type": "limit", "price": 100, "quantity": 1}
    placed = lite_node.client.post("/api/orders", json=order, headers=token)
    assert placed.status_code == 201, placed.text
    withdraw = lite_node.client.post(
        "/v1/withdrawals", json={"chain": "bitcoin", "address": "x", "amount": 1}, headers=token
    )
    assert withdraw.status_code in (403, 404)  # never allowed; 404 when withdrawals are off
    gone = lite_node.client.delete(f"/api/tokens/{made['id']}", headers=alice)
    assert gone.status_code == 204
    after = lite_node.client.get("/api/balances", headers=token)
    assert after.status_code == 401
    listed = lite_node.client.get("/api/tokens", headers=alice).json()["tokens"]
    assert listed[0]["revoked_at"] is not None


def test_another_members_token_is_a_missing_one(lite_node: Node) -> None:
    _, alice = lite_node.member("alice")
    _, bob = lite_node.member("bob")
    made = _make(lite_node, alice, ["read"])
    assert lite_node.client.delete(f"/api/tokens/{made['id']}", headers=bob).status_code == 404
    assert lite_node.client.delete("/api/tokens/99999", headers=bob).status_code == 404
    assert lite_node.client.get("/api/tokens", headers=bob).json()["tokens"] == []
    assert lite_node.client.get("/api/balances", headers=_bearer(made["token"])).status_code == 200


def test_wrong_secret_unknown_scope_and_expiry(lite_node: Node) -> None:
    _, alice = lite_node.member("alice")
    made = _make(lite_node, alice, ["read"], expires_in_days=1)
    assert made["expires_at"] is not None
    forged = made["token"].rsplit(".", 1)[0] + ".not-the-secret"
    assert lite_node.client.get("/api/balances", headers=_bearer(forged)).status_code == 401
    bad = {"name": "x", "scopes": ["admin"]}
    assert lite_node.client.post("/api/tokens", json=bad, headers=alice).status_code == 422
    rt = lite_node.client.app.state.runtime  # type: ignore[attr-defined]
    with rt.sessions.begin() as session:
        row = session.get(MemberApiToken, made["id"])
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert lite_node.client.get("/api/balances", headers=_bearer(made["token"])).status_code == 401


def test_order_entry_websocket_needs_the_trade_scope(lite_node: Node) -> None:
    _, alice = lite_node.member("alice", sats=1_000_000)
    reader = _bearer(_make(lite_node, alice, ["read"])["token"])
    trader = _bearer(_make(lite_node, alice, ["trade"])["token"])
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        lite_node.client.websocket_connect("/ws/trade", headers=reader),
    ):
        pass
    assert refused.value.code == 1008
    with lite_node.client.websocket_connect("/ws/trade", headers=trader) as ws:
        ws.send_json({"op": "place", "client_id": 1, "side": "buy", "price": 100, "quantity": 1})
        reply = ws.receive_json()
    assert reply["ok"] and reply["order"]["status"] == "open"
    # a trade-only token cannot even read its balances
    assert lite_node.client.get("/api/balances", headers=trader).status_code == 403
