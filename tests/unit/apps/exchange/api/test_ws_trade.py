"""Order entry over ``/ws/trade``: auth, place/cancel moving balances, scoping, commit before
the answer (an injected crash in the batch answers an error and leaves nothing), limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from scnode_exchange.api.app import create_app
from scnode_exchange.trading.writer import TradeWriter
from tests.unit.apps.exchange.api.node import Node, make_settings


def ask(ws: WebSocketTestSession, **command: Any) -> dict[str, Any]:
    ws.send_json(command)
    reply: dict[str, Any] = ws.receive_json()
    assert reply["client_id"] == command.get("client_id"), reply
    return reply


def test_refused_without_a_valid_session(lite_node: Node) -> None:
    client = lite_node.client
    _, headers = lite_node.member("alice", sats=1_000)
    for bad in ({}, {"Authorization": "Bearer scms1.1.9999999999.forged"}):
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/ws/trade", headers=bad),
        ):
            pass
        assert refused.value.code == 1008
    # the session cookie alone is a cross-site hijack risk: only with a same-origin Origin
    token = headers["Authorization"].removeprefix("Bearer ")
    client.cookies.set("scnode_session", token)
    try:
        for origin in ({}, {"Origin": "https://evil.example"}):
            with (
                pytest.raises(WebSocketDisconnect),
                client.websocket_connect("/ws/trade", headers=origin),
            ):
                pass
        with client.websocket_connect("/ws/trade", headers={"Origin": "http://testserver"}) as ws:
            reply = ask(ws, op="place", client_id=1, side="buy", price=100, quantity=1)
            assert reply["ok"] and reply["order"]["status"] == "open"
    finally:
        client.cookies.clear()
    assert lite_node.balance(headers, "SATS")["reserved"] == 100


def test_place_fill_and_cancel_move_balances(node: Node) -> None:
    client = node.client
    _, alice = node.member("alice", sats=100_000)
    _, bob = node.member("bob", azc=10_000_000)  # 10 lots
    with (
        client.websocket_connect("/ws/trade", headers=alice) as a,
        client.websocket_connect("/ws/trade", headers=bob) as b,
    ):
        bid = ask(a, op="place", client_id="bid-1", side="buy", price=1_000, quantity=5)
        assert bid["ok"] and bid["op"] == "place"
        order = bid["order"]
        assert (order["status"], order["filled"], order["remaining"]) == ("open", 0, 5)
        assert node.balance(alice, "SATS")["reserved"] == 5_000
        sell = ask(b, op="place", client_id=2, side="sell", price=1_000, quantity=2, type="limit")
        assert sell["ok"] and sell["order"]["status"] == "filled"
        assert sell["order"]["filled"] == 2
        # the buyer got 2 lots minus the maker fee (10 bps of 2_000_000 azsat)
        assert node.balance(alice, "AZC")["balance"] == 2_000_000 - 2_000
        assert node.balance(alice, "SATS")["reserved"] == 3_000
        assert node.balance(bob, "SATS")["balance"] == 2_000 - 4  # taker fee 20 bps
        cancelled = ask(a, op="cancel", client_id=3, order_id=order["id"])
        assert cancelled["ok"], cancelled
        assert cancelled["order"] == {
            "id": order["id"],
            "market": "AZC/SATS",
            "status": "cancelled",
            "cancelled": 3,
        }
        assert node.balance(alice, "SATS") == {
            "asset": "SATS",
            "balance": 98_000,
            "reserved": 0,
            "available": 98_000,
        }
        # the REST view agrees with what the socket answered
        stored = client.get(f"/api/orders/{order['id']}", headers=alice).json()
        assert (stored["status"], stored["filled"]) == ("cancelled", 2)
        again = ask(a, op="cancel", client_id=4, order_id=order["id"])
        assert (again["ok"], again["error"]) == (False, "not_found")


def test_another_members_order_is_not_found(lite_node: Node) -> None:
    client = lite_node.client
    _, alice = lite_node.member("alice", sats=10_000)
    _, mallory = lite_node.member("mallory", sats=10_000)
    with (
        client.websocket_connect("/ws/trade", headers=alice) as a,
        client.websocket_connect("/ws/trade", headers=mallory) as m,
    ):
        order = ask(a, op="place", client_id=1, side="buy", price=100, quantity=3)["order"]
        theirs = ask(m, op="cancel", client_id=1, order_id=order["id"])
        missing = ask(m, op="cancel", client_id=2, order_id=order["id"] + 1000)
        assert (theirs["ok"], theirs["error"]) == (False, "not_found")
        assert theirs["detail"].replace(str(order["id"]), "N") == missing["detail"].replace(
            str(order["id"] + 1000), "N"
        )
    assert lite_node.balance(alice, "SATS")["reserved"] == 300


def test_answer_comes_after_commit_and_a_crash_leaves_nothing(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = node.client
    _, alice = node.member("alice", sats=50_000)
    with client.websocket_connect("/ws/trade", headers=alice) as ws:
        ok = ask(ws, op="place", client_id=1, side="buy", price=100, quantity=2)
        # answered ⇒ committed: a fresh database read sees the order and its hold
        assert client.get(f"/api/orders/{ok['order']['id']}", headers=alice).status_code == 200

        def crash(self: TradeWriter) -> None:
            raise RuntimeError("injected crash before the batch's writes")

        monkeypatch.setattr(TradeWriter, "flush", crash)
        failed = ask(ws, op="place", client_id=2, side="buy", price=110, quantity=7)
        assert (failed["ok"], failed["error"]) == (False, "failed")
        assert "nothing committed" in failed["detail"]
        monkeypatch.undo()
        # nothing half-applied: no hold, no order row, no level on the book
        assert node.balance(alice, "SATS")["reserved"] == 200
        mine = client.get("/api/orders/mine?status=all", headers=alice).json()["items"]
        assert [o["price"] for o in mine] == [100]
        assert client.get("/api/depth").json()["bids"] == [[100, 2]]
        # and the exchange goes on from a consistent book
        again = ask(ws, op="place", client_id=3, side="buy", price=110, quantity=7)
        assert again["ok"] and again["order"]["status"] == "open"
    assert node.balance(alice, "SATS")["reserved"] == 200 + 770


def test_pipelined_commands_and_bad_messages(lite_node: Node) -> None:
    client = lite_node.client
    _, alice = lite_node.member("alice", sats=100_000)
    with client.websocket_connect("/ws/trade", headers=alice) as ws:
        for i in range(30):
            ws.send_json({"op": "place", "client_id": i, "side": "buy", "price": 10 + 10 * (i % 3),
                          "quantity": 1})  # fmt: skip
        replies = [ws.receive_json() for _ in range(30)]
        assert sorted(r["client_id"] for r in replies) == list(range(30))
        assert all(r["ok"] and r["order"]["status"] == "open" for r in replies)
        assert len({r["order"]["id"] for r in replies}) == 30
        ws.send_text("not json")
        assert ws.receive_json()["error"] == "invalid"
        for bad in (
            {"op": "fly", "client_id": "x"},
            {"op": "place", "client_id": "f", "side": "buy", "price": 10.5, "quantity": 1},
            {"op": "place", "client_id": "q", "side": "buy", "price": 10, "quantity": 0},
            {"op": "place", "client_id": "u", "side": "buy", "price": 10, "quantity": 1, "x": 1},
            {"op": "cancel", "client_id": "c", "order_id": "1"},
        ):
            reply = ask(ws, **bad)
            assert (reply["ok"], reply["error"]) == (False, "invalid"), reply
        poor = ask(ws, op="place", client_id="p", side="buy", price=1_000_000, quantity=1)
        # as over REST: a stored, rejected order (the engine's reason), not a refusal
        assert poor["ok"] and poor["order"]["status"] == "rejected"
        assert poor["order"]["reject_reason"] == "insufficient_funds"
    assert lite_node.balance(alice, "SATS")["reserved"] == 10 * (10 + 20 + 30)


def test_rate_limit_is_shared_with_rest_and_open_orders_are_counted(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings, key = make_settings(
        tmp_path, sqlite_url, orders_per_second=0.01, orders_burst=4, max_open_orders_per_member=2
    )
    with TestClient(create_app(settings)) as client:
        node = Node(client, key, settings)
        _, alice = node.member("alice", sats=100_000)
        _, bob = node.member("bob", azc=10_000_000)
        with (
            client.websocket_connect("/ws/trade", headers=alice) as a,
            client.websocket_connect("/ws/trade", headers=bob) as b,
        ):
            first = ask(a, op="place", client_id=1, side="buy", price=100, quantity=1)
            ask(a, op="place", client_id=2, side="buy", price=100, quantity=1)
            third = ask(a, op="place", client_id=3, side="buy", price=100, quantity=1)
            assert (third["ok"], third["error"]) == (False, "too_many_open_orders")
            # bob fills one of alice's orders: the limit counts it gone at once
            assert ask(b, op="place", client_id=1, side="sell", price=100, quantity=1)["ok"]
            fourth = ask(a, op="place", client_id=4, side="buy", price=100, quantity=1)
            assert fourth["ok"], fourth
            limited = ask(a, op="cancel", client_id=5, order_id=first["order"]["id"])
            assert (limited["ok"], limited["error"]) == (False, "rate_limited")
            assert limited["retry_after"] >= 1
        order = {"side": "buy", "price": 100, "quantity": 1}
        rest = client.post("/api/orders", headers=alice, json=order)
        assert (rest.status_code, rest.json()["detail"]) == (429, "too many requests, slow down")
