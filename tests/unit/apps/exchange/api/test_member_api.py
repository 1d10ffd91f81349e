"""The member API end to end on a real app: auth, trading through the API with balances
moving, and two members trying each other's ids on every member route."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from fastapi.testclient import TestClient

from scnode_exchange.api.app import create_app
from scnode_exchange.ledger import verify
from scnode_exchange.trading.service import verify_orders
from tests.unit.apps.exchange.api.node import LOT, MARKET, Node, make_settings


def test_health_registration_and_lab_login(lite_node: Node) -> None:
    client = lite_node.client
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/api/health").status_code == 200
    assert client.post("/api/auth/register", json={"username": "x"}).status_code == 403
    assert client.get("/api/auth/me").status_code == 401
    assert client.get("/api/wallet", headers={"Authorization": "Bearer forged"}).status_code == 401
    member_id, _ = lite_node.member("alice")
    assert client.post("/api/auth/login", json={"username": "nobody"}).status_code == 401
    login = client.post("/api/auth/login", json={"username": "alice"})
    assert login.status_code == 200 and login.json()["member_id"] == member_id
    # the cookie set by login is enough to read; changing needs X-Requested-With
    assert client.get("/api/auth/me").json()["username"] == "alice"
    order = {"side": "buy", "price": 100, "quantity": 1}
    assert client.post("/api/orders", json=order).status_code == 403
    # /metrics needs a key, never a member session
    assert client.get("/metrics").status_code == 401
    assert "scnode_exchange_request_seconds" in client.get("/metrics", headers=lite_node.owner).text


def test_owner_routes_refuse_members(lite_node: Node) -> None:
    member_id, alice = lite_node.member("alice")
    for method, path in [
        ("get", "/api/owner/members"),
        ("get", "/api/owner/audit"),
        ("post", f"/api/owner/members/{member_id}/freeze"),
        ("post", f"/api/owner/members/{member_id}/adjustments"),
    ]:
        reply = lite_node.client.request(method, path, headers=alice, json={"reason": "mine!"})
        assert reply.status_code == 403, (path, reply.text)
        assert lite_node.client.request(method, path, json={}).status_code == 401


def test_orders_match_through_the_api_and_balances_move(node: Node) -> None:
    client = node.client
    seller_id, seller = node.member("seller", azc=10 * LOT)
    buyer_id, buyer = node.member("buyer", sats=100_000)

    ask = client.post(
        "/api/orders", headers=seller, json={"side": "sell", "price": 1000, "quantity": 5}
    )
    assert ask.status_code == 201, ask.text
    assert ask.json()["status"] == "open"
    assert node.balance(seller, "AZC") == {
        "asset": "AZC",
        "balance": 10 * LOT,
        "reserved": 5 * LOT,
        "available": 5 * LOT,
    }

    # a buy above the ask fills at the maker's price; the price improvement is released
    bid = client.post(
        "/api/orders", headers=buyer, json={"side": "buy", "price": 1010, "quantity": 3}
    )
    assert bid.status_code == 201, bid.text
    assert bid.json()["status"] == "filled" and bid.json()["filled"] == 3
    taker_fee = -(-(3 * LOT) * 20 // 10_000)  # buyer pays the taker fee in AZC
    maker_fee = -(-3000 * 10 // 10_000)  # seller pays the maker fee in sats
    assert node.balance(buyer, "SATS") == {
        "asset": "SATS",
        "balance": 97_000,
        "reserved": 0,
        "available": 97_000,
    }
    assert node.balance(buyer, "AZC")["balance"] == 3 * LOT - taker_fee
    assert node.balance(seller, "SATS")["balance"] == 3000 - maker_fee
    assert node.balance(seller, "AZC") == {
        "asset": "AZC",
        "balance": 7 * LOT,
        "reserved": 2 * LOT,
        "available": 5 * LOT,
    }
    wallet = client.get("/api/wallet", headers=buyer).json()
    assert wallet["sats"] == 97_000 and wallet["azc"] == 3 * LOT - taker_fee

    mine = client.get("/api/trades/mine", headers=buyer).json()["items"]
    assert [
        (t["side"], t["liquidity"], t["price"], t["quantity"], t["fee"], t["fee_asset"])
        for t in mine
    ] == [("buy", "taker", 1000, 3, taker_fee, "AZC")]
    theirs = client.get("/api/trades/mine", headers=seller).json()["items"]
    assert [(t["side"], t["liquidity"], t["fee"]) for t in theirs] == [("sell", "maker", maker_fee)]
    public = client.get("/api/trades").json()
    assert [(t["price"], t["quantity"]) for t in public] == [(1000, 3)]
    assert "buyer_id" not in public[0] and "seller_id" not in public[0]
    assert client.get("/api/orders").json()["asks"] == [[1000, 2]]

    # IOC: the remainder is cancelled, post-only that would take is rejected, market orders
    # need a protection price
    ioc = client.post(
        "/api/orders",
        headers=buyer,
        json={"side": "buy", "price": 1000, "quantity": 4, "time_in_force": "ioc"},
    ).json()
    assert (ioc["status"], ioc["filled"]) == ("cancelled", 2)
    client.post("/api/orders", headers=seller, json={"side": "sell", "price": 1200, "quantity": 1})
    post_only = client.post(
        "/api/orders",
        headers=buyer,
        json={"side": "buy", "price": 1200, "quantity": 1, "time_in_force": "post_only"},
    ).json()
    assert (post_only["status"], post_only["reject_reason"]) == ("rejected", "post_only_would_take")
    no_protection = client.post(
        "/api/orders", headers=buyer, json={"side": "buy", "type": "market", "quantity": 1}
    )
    assert no_protection.status_code == 422
    market_buy = client.post(
        "/api/orders",
        headers=buyer,
        json={"side": "buy", "type": "market", "price": 1100, "quantity": 1},
    ).json()
    assert market_buy["status"] == "cancelled" and market_buy["filled"] == 0  # 1200 > protection
    too_big = client.post(
        "/api/orders", headers=buyer, json={"side": "buy", "price": 10**6, "quantity": 1000}
    )
    assert too_big.json()["reject_reason"] == "insufficient_funds"
    float_price = client.post(
        "/api/orders", headers=buyer, json={"side": "buy", "price": 1000.5, "quantity": 1}
    )
    assert float_price.status_code == 422

    # cancel releases the hold
    open_id = client.get("/api/orders/mine", headers=seller).json()["items"][0]["id"]
    cancelled = client.delete(f"/api/orders/{open_id}", headers=seller)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.delete(f"/api/orders/{open_id}", headers=seller).status_code == 404

    with node.client.app.state.runtime.sessions() as session:  # type: ignore[attr-defined]
        assert verify(session).ok
        assert verify_orders(session, [MARKET.spec()]) == []
    assert seller_id != buyer_id


def test_two_members_cannot_reach_each_other(node: Node) -> None:
    client = node.client
    _, alice = node.member("alice", azc=5 * LOT, sats=50_000)
    _, bob = node.member("bob", sats=50_000)
    alice_order = client.post(
        "/api/orders", headers=alice, json={"side": "sell", "price": 2000, "quantity": 2}
    ).json()
    client.post("/api/orders", headers=bob, json={"side": "buy", "price": 2000, "quantity": 1})
    bob_order = client.post(
        "/api/orders", headers=bob, json={"side": "buy", "price": 500, "quantity": 1}
    ).json()
    missing = 10**9

    # another member's order looks exactly like one that does not exist
    for order_id in (bob_order["id"], missing):
        got = client.get(f"/api/orders/{order_id}", headers=alice)
        assert got.status_code == 404
        assert got.json() == {"detail": f"no order {order_id}"}
        gone = client.delete(f"/api/orders/{order_id}", headers=alice)
        assert gone.status_code == 404
        assert gone.json()["detail"] == f"no open order {order_id}"
    assert client.get(f"/api/orders/{alice_order['id']}", headers=alice).status_code == 200
    assert client.get(f"/api/orders/{bob_order['id']}", headers=bob).json()["status"] == "open"

    for which in ("open", "history", "all"):
        alice_ids = {
            o["id"]
            for o in client.get(f"/api/orders/mine?status={which}", headers=alice).json()["items"]
        }
        bob_ids = {
            o["id"]
            for o in client.get(f"/api/orders/mine?status={which}", headers=bob).json()["items"]
        }
        assert not alice_ids & bob_ids
        assert bob_order["id"] not in alice_ids
    alice_fills = client.get("/api/trades/mine", headers=alice).json()["items"]
    bob_fills = client.get("/api/trades/mine", headers=bob).json()["items"]
    assert [f["side"] for f in alice_fills] == ["sell"]
    assert [f["side"] for f in bob_fills] == ["buy"]
    assert alice_fills[0]["order_id"] == alice_order["id"]
    assert bob_fills[0]["order_id"] != alice_order["id"]

    alice_history = client.get("/api/history", headers=alice).json()["items"]
    bob_history = client.get("/api/history", headers=bob).json()["items"]
    assert not {h["id"] for h in alice_history} & {h["id"] for h in bob_history}
    # alice: two fundings and a trade (SATS in, AZC out); bob: one funding and a trade
    assert sorted((h["kind"], h["asset"]) for h in alice_history) == [
        ("owner_adjustment", "AZC"),
        ("owner_adjustment", "SATS"),
        ("trade", "AZC"),
        ("trade", "SATS"),
    ]
    assert all("order" not in (h["description"] or "") for h in alice_history)
    rows = list(csv.DictReader(io.StringIO(client.get("/api/history.csv", headers=bob).text)))
    assert {r["id"] for r in rows} == {str(h["id"]) for h in bob_history}
    assert client.get("/api/history.csv").status_code == 401


def test_history_pages_and_csv_amounts(lite_node: Node) -> None:
    _, alice = lite_node.member("alice")
    member_id = lite_node.client.get("/api/auth/me", headers=alice).json()["member_id"]
    for amount in range(1, 8):
        lite_node.adjust(member_id, "AZC", amount * 100_000_000 + 5)
    lite_node.adjust(member_id, "AZC", -5)
    seen: list[int] = []
    before = None
    while True:
        url = "/api/history?limit=3" + (f"&before_id={before}" if before else "")
        page = lite_node.client.get(url, headers=alice).json()
        seen += [h["id"] for h in page["items"]]
        before = page["next_before_id"]
        if before is None:
            break
    assert len(seen) == 8 and seen == sorted(seen, reverse=True)
    rows = list(
        csv.DictReader(io.StringIO(lite_node.client.get("/api/history.csv", headers=alice).text))
    )
    assert [r["amount_decimal"] for r in rows][:2] == ["1.00000005", "2.00000005"]
    assert rows[-1]["amount"] == "-5" and rows[-1]["amount_decimal"] == "-0.00000005"


def test_open_order_limit(sqlite_url: str, tmp_path: Path) -> None:
    settings, key = make_settings(tmp_path, sqlite_url, max_open_orders_per_member=2)
    with TestClient(create_app(settings)) as client:
        node = Node(client, key, settings)
        _, alice = node.member("alice", sats=100_000)
        order = {"side": "buy", "price": 100, "quantity": 1}
        first = client.post("/api/orders", headers=alice, json=order).json()
        client.post("/api/orders", headers=alice, json=order)
        refused = client.post("/api/orders", headers=alice, json=order)
        assert refused.status_code == 429 and "2 open orders" in refused.json()["detail"]
        client.delete(f"/api/orders/{first['id']}", headers=alice)
        assert client.post("/api/orders", headers=alice, json=order).status_code == 201
