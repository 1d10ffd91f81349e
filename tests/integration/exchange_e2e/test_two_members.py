"""Issue 6 "Done when", tried as two new members and the owner would, only through HTTP: a
simnet Bitcoin regtest chain and a simnet AZCoin regtest chain (each with the simulated outside
world paying, the node wallet ``wallet``), a real chain API process per chain and the exchange
app process (deposit watcher and withdrawal worker inside it) on an SQLite database.

Members log in (lab login) and get deposit addresses on both chains; the outside world pays
A in AZC and B in sats (pending, then credited at N confirmations); A sells AZC with GTC limit
orders and B buys across them (balances move by exactly price * qty and the fees); A withdraws
sats and B AZC (owner approval above the threshold), each paid by exactly one wallet
transaction and confirmed after a block; the ledger audit is clean and every member's history
(JSON and CSV) holds only their own movements; B gets 404s for A's order and withdrawal."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import bitcoin.segwit_addr
import httpx
import pytest
from sqlalchemy import func, select

from scnode_exchange.db import make_engine, make_sessionmaker
from scnode_exchange.ledger import NODE_WALLET, Account, verify
from tests.integration.exchange_e2e.handle import (
    Chain,
    ExchangeProcess,
    postgres_database,
    remove,
)

LOT = 1_000_000  # azsat per lot (0.01 AZC); prices in sats per lot
TICK = 10
MAKER_BPS, TAKER_BPS = 10, 20
N = 2  # deposit confirmations on both chains
BTC_FEE, AZC_FEE = 300, 10_000  # flat withdrawal fees (sats, azsat)
APPROVAL_ABOVE = 5_000_000  # base units: withdrawals above wait for the owner

A_DEPOSIT_AZC = 100_000_000  # 1 AZC
B_DEPOSIT_SATS = 500_000


def ceil_fee(amount: int, bps: int) -> int:
    """The README's fee rule: ceil(amount * bps / 10 000), per fill."""
    return -(-amount * bps // 10_000)


POSTGRES_URL = os.environ.get("SCNODE_TEST_POSTGRES_URL", "")


@pytest.fixture(params=["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"])
def world(request: pytest.FixtureRequest) -> Iterator[tuple[Chain, Chain, ExchangeProcess]]:
    """Both chains with their chain APIs and the exchange process on SQLite, and on
    PostgreSQL too when SCNODE_TEST_POSTGRES_URL is set."""
    root = Path(tempfile.mkdtemp(prefix="scnode-e2e-"))
    chains: list[Chain] = []
    exchange: ExchangeProcess | None = None
    stack = contextlib.ExitStack()
    try:
        if request.param == "sqlite":
            database_url = f"sqlite:///{root / 'exchange.sqlite3'}"
        else:
            database_url = stack.enter_context(postgres_database(POSTGRES_URL))
        chains = [Chain(coin, root / coin) for coin in ("bitcoin", "azcoin")]
        with ThreadPoolExecutor(2) as pool:  # both chains (and their APIs) start at once
            for started in [pool.submit(chain.start) for chain in chains]:
                started.result()
        btc, azc = chains
        (root / "exchange").mkdir()
        exchange = ExchangeProcess(
            root / "exchange",
            database_url,
            {
                "MARKETS": [
                    {"symbol": "AZC/SATS", "base": "AZC", "quote": "SATS", "lot_size": LOT,
                     "tick": TICK, "maker_fee_bps": MAKER_BPS, "taker_fee_bps": TAKER_BPS}
                ],
                "CHAINS": {
                    "bitcoin": {"asset": "SATS", "confirmations": N, **btc.settings},
                    "azcoin": {"asset": "AZC", "confirmations": N, **azc.settings},
                },
                "WITHDRAWALS": {
                    # every coin's regtest uses Bitcoin's regtest HRP (PROTOCOLS.md)
                    "bitcoin": {"hrp": "bcrt", "min_amount": 1_000, "flat_fee": BTC_FEE,
                                "confirmations": 1},
                    "azcoin": {"hrp": "bcrt", "min_amount": 100_000, "flat_fee": AZC_FEE,
                               "confirmations": 1},
                },
                "WITHDRAWAL_APPROVAL_THRESHOLD": str(APPROVAL_ABOVE),
                "WITHDRAWAL_POLL_SECONDS": "0.2",
            },
        )  # fmt: skip
        exchange.other_logs = [c.root / "api" / "api.log" for c in chains]
        exchange.start()
        yield btc, azc, exchange
        assert exchange.stop() in (0, -15), exchange.log_tail()
        assert "Traceback" not in exchange.log.read_text(errors="replace"), exchange.log_tail()
    finally:
        if exchange is not None:
            exchange.stop()
        for chain in chains:
            chain.stop()
        stack.close()
        remove(root)


def _ok(response: httpx.Response, code: int = 200) -> Any:
    assert response.status_code == code, (response.request.method, response.url, response.text)
    return response.json()


def _available(client: httpx.Client) -> dict[str, int]:
    return {b["asset"]: b["available"] for b in _ok(client.get("/api/balances"))}


def _balances(client: httpx.Client) -> dict[str, tuple[int, int]]:
    return {b["asset"]: (b["balance"], b["reserved"]) for b in _ok(client.get("/api/balances"))}


def test_two_members_deposit_trade_withdraw_and_audit(
    world: tuple[Chain, Chain, ExchangeProcess],
) -> None:
    btc, azc, ex = world
    owner = httpx.Client(base_url=ex.url, headers={"X-API-Key": ex.owner_key}, timeout=15)
    members: dict[str, httpx.Client] = {}
    ids: dict[str, int] = {}
    for handle in ("alice", "bob"):
        ids[handle] = _ok(
            owner.post("/api/owner/members", json={"handle": handle, "reason": "new member"}), 201
        )["id"]
        login = _ok(httpx.post(f"{ex.url}/api/auth/login", json={"username": handle}))
        members[handle] = httpx.Client(
            base_url=ex.url, headers={"Authorization": f"Bearer {login['token']}"}, timeout=15
        )
    a, b = members["alice"], members["bob"]
    me = _ok(a.get("/api/auth/me"))
    assert (me["member_id"], me["username"]) == (ids["alice"], "alice")

    # 1. deposit addresses on both chains (regtest HRP), stable, different per member
    addr: dict[tuple[str, str], str] = {}
    for handle, client in members.items():
        for chain, asset in (("bitcoin", "SATS"), ("azcoin", "AZC")):
            got = _ok(client.get("/v1/deposits/address", params={"chain": chain}))
            assert got["asset"] == asset and got["required_confirmations"] == N
            assert got["address"].startswith("bcrt1q"), got
            again = _ok(client.get("/v1/deposits/address", params={"chain": chain}))
            assert again["address"] == got["address"]
            addr[handle, chain] = got["address"]
    assert len(set(addr.values())) == 4
    owned = azc.node.rpc("getaddressinfo", addr["alice", "azcoin"], wallet="wallet")
    assert owned["ismine"] is True  # the node wallet of that chain receives the deposits

    # 2. the outside world pays A in AZC and B in sats: pending, then credited at N
    a_txid = azc.node.pay(addr["alice", "azcoin"], A_DEPOSIT_AZC)
    b_txid = btc.node.pay(addr["bob", "bitcoin"], B_DEPOSIT_SATS)

    def pending(client: httpx.Client) -> list[dict[str, Any]]:
        return list(_ok(client.get("/v1/deposits/pending"))["deposits"])

    ex.wait_for("both deposits pending", lambda: bool(pending(a)) and bool(pending(b)))
    (a_pending,) = pending(a)
    (b_pending,) = pending(b)
    assert (a_pending["chain"], a_pending["txid"], a_pending["asset"], a_pending["amount"]) == (
        "azcoin", a_txid, "AZC", A_DEPOSIT_AZC,
    )  # fmt: skip
    assert (b_pending["chain"], b_pending["txid"], b_pending["asset"], b_pending["amount"]) == (
        "bitcoin", b_txid, "SATS", B_DEPOSIT_SATS,
    )  # fmt: skip
    assert a_pending["state"] == b_pending["state"] == "pending"
    in_history = {p["txid"] for p in _ok(a.get("/api/history"))["pending"]}
    assert in_history == {a_txid}
    assert _available(a).get("AZC", 0) == 0 and _available(b).get("SATS", 0) == 0

    azc.node.mine(N - 1)
    btc.node.mine(N - 1)
    ex.wait_for(
        "N-1 confirmations seen",
        lambda: [d["confirmations"] for d in pending(a) + pending(b)] == [N - 1, N - 1],
    )
    assert _available(a).get("AZC", 0) == 0 and _available(b).get("SATS", 0) == 0
    azc.node.mine(1)
    btc.node.mine(1)
    ex.wait_for(
        "credited at N",
        lambda: (
            _available(a).get("AZC") == A_DEPOSIT_AZC
            and _available(b).get("SATS") == B_DEPOSIT_SATS
        ),
    )
    assert pending(a) == pending(b) == []
    (a_dep,) = _ok(a.get("/v1/deposits"))["deposits"]
    (b_dep,) = _ok(b.get("/v1/deposits"))["deposits"]
    assert a_dep["state"] == b_dep["state"] == "credited"
    assert _ok(a.get("/api/wallet"))["azc"] == A_DEPOSIT_AZC

    # 3. A sells AZC with GTC limit orders, B buys across both
    def order(client: httpx.Client, side: str, price: int, quantity: int) -> dict[str, Any]:
        body = {"market": "AZC/SATS", "side": side, "type": "limit", "price": price,
                "quantity": quantity, "time_in_force": "gtc"}  # fmt: skip
        return dict(_ok(client.post("/api/orders", json=body), 201))

    sell_low, sell_high = order(a, "sell", 1000, 10), order(a, "sell", 1020, 20)
    assert sell_low["status"] == sell_high["status"] == "open"
    buy = order(b, "buy", 1020, 25)
    assert buy["status"] == "filled" and buy["filled"] == 25
    fills = [(1000, 10), (1020, 15)]  # at the makers' prices, best first
    quote = sum(p * q for p, q in fills)
    base = sum(q for _, q in fills) * LOT
    buyer_fee = sum(ceil_fee(q * LOT, TAKER_BPS) for _, q in fills)  # in AZC, B is taker
    seller_fee = sum(ceil_fee(p * q, MAKER_BPS) for p, q in fills)  # in sats, A is maker
    assert (quote, base, buyer_fee, seller_fee) == (25_300, 25_000_000, 50_000, 26)
    a_sats, a_azc = quote - seller_fee, A_DEPOSIT_AZC - base
    b_sats, b_azc = B_DEPOSIT_SATS - quote, base - buyer_fee
    left_reserved = 5 * LOT  # what A's remaining 5 lots at 1020 still hold
    assert _balances(a) == {"AZC": (a_azc, left_reserved), "SATS": (a_sats, 0)}
    assert _balances(b) == {"AZC": (b_azc, 0), "SATS": (b_sats, 0)}
    a_items = _ok(a.get("/api/trades/mine"))["items"]
    b_items = _ok(b.get("/api/trades/mine"))["items"]
    assert sorted(
        (t["price"], t["quantity"], t["side"], t["liquidity"], t["fee"], t["fee_asset"])
        for t in a_items
    ) == [(p, q, "sell", "maker", ceil_fee(p * q, MAKER_BPS), "SATS") for p, q in fills]
    assert sorted(
        (t["price"], t["quantity"], t["side"], t["liquidity"], t["fee"], t["fee_asset"])
        for t in b_items
    ) == [(p, q, "buy", "taker", ceil_fee(q * LOT, TAKER_BPS), "AZC") for p, q in fills]
    assert {t["order_id"] for t in a_items} == {sell_low["id"], sell_high["id"]}
    public = _ok(httpx.get(f"{ex.url}/api/orders"))
    assert public["asks"] == [[1020, 5]] and public["bids"] == []

    # 4. withdrawals: A sats (straight away), B AZC (above the threshold: owner approves)
    a_out = btc.node.rpc("getnewaddress", wallet="outside")
    b_out = azc.node.rpc("getnewaddress", wallet="outside")
    a_amount, b_amount = 15_000, 10_000_000
    # a mainnet address (same witness program, HRP "bc") is refused before anything is held
    mainnet = bitcoin.segwit_addr.encode("bc", *bitcoin.segwit_addr.decode("bcrt", a_out))
    refused = a.post(
        "/v1/withdrawals",
        json={"chain": "bitcoin", "address": mainnet, "amount": a_amount,
              "idempotency_key": "alice-0"},
    )  # fmt: skip
    assert refused.status_code == 422, refused.text
    assert _balances(a)["SATS"] == (a_sats, 0)
    a_wd = _ok(
        a.post(
            "/v1/withdrawals",
            json={"chain": "bitcoin", "address": a_out, "amount": a_amount,
                  "idempotency_key": "alice-1"},
        ),
        201,
    )  # fmt: skip
    b_wd = _ok(
        b.post(
            "/v1/withdrawals",
            json={"chain": "azcoin", "address": b_out, "amount": b_amount,
                  "idempotency_key": "bob-1"},
        ),
        201,
    )  # fmt: skip
    assert (a_wd["fee"], b_wd["fee"]) == (BTC_FEE, AZC_FEE)
    replay = a.post(
        "/v1/withdrawals",
        json={"chain": "bitcoin", "address": a_out, "amount": a_amount,
              "idempotency_key": "alice-1"},
    )  # fmt: skip
    assert replay.status_code == 200 and replay.json()["id"] == a_wd["id"]

    def wd_state(client: httpx.Client, wd_id: int) -> dict[str, Any]:
        return dict(_ok(client.get(f"/v1/withdrawals/{wd_id}")))

    ex.wait_for("A's withdrawal broadcast", lambda: wd_state(a, a_wd["id"])["txid"] is not None)
    assert wd_state(b, b_wd["id"])["state"] == "awaiting_approval"
    b_waiting = [p for p in _ok(b.get("/api/history"))["pending"] if p["kind"] == "withdrawal"]
    assert [(p["id"], p["state"]) for p in b_waiting] == [(b_wd["id"], "awaiting_approval")]
    assert _balances(b)["AZC"] == (b_azc, b_amount + AZC_FEE)  # held while it waits
    waiting = _ok(owner.get("/v1/owner/withdrawals", params={"state": "awaiting_approval"}))
    assert [w["id"] for w in waiting["withdrawals"]] == [b_wd["id"]]
    _ok(owner.post(f"/v1/owner/withdrawals/{b_wd['id']}/approve"))
    ex.wait_for("B's withdrawal broadcast", lambda: wd_state(b, b_wd["id"])["txid"] is not None)
    a_txid_out = wd_state(a, a_wd["id"])["txid"]
    b_txid_out = wd_state(b, b_wd["id"])["txid"]

    # exactly one wallet transaction each, paying exactly the amount to the address
    for on, txid, address, amount, key_id in (
        (btc, a_txid_out, a_out, a_amount, a_wd["id"]),
        (azc, b_txid_out, b_out, b_amount, b_wd["id"]),
    ):
        sends = on.wallet_sends()
        assert [s["txid"] for s in sends] == [txid], sends
        assert sends[0]["comment"].endswith(f"-{key_id:06d}"), sends[0]
        tx = on.node.rpc("gettransaction", txid, wallet="outside")
        assert [(d["address"], round(d["amount"] * 100_000_000)) for d in tx["details"]] == [
            (address, amount)
        ]
    btc.node.mine(1)
    azc.node.mine(1)
    ex.wait_for(
        "both withdrawals confirmed",
        lambda: (
            wd_state(a, a_wd["id"])["state"] == "confirmed"
            and wd_state(b, b_wd["id"])["state"] == "confirmed"
        ),
        timeout=40,
    )
    assert [s["txid"] for s in btc.wallet_sends()] == [a_txid_out]
    assert [s["txid"] for s in azc.wallet_sends()] == [b_txid_out]
    a_sats -= a_amount + BTC_FEE
    b_azc -= b_amount + AZC_FEE
    assert _balances(a) == {"AZC": (a_azc, left_reserved), "SATS": (a_sats, 0)}
    assert _balances(b) == {"AZC": (b_azc, 0), "SATS": (b_sats, 0)}

    # 5. owner: balances seen as the members see them, audit log, the ledger balanced
    for handle, client in members.items():
        seen = _ok(owner.get(f"/api/owner/members/{ids[handle]}"))
        owner_view = {x["asset"]: (x["balance"], x["reserved"]) for x in seen["balances"]}
        assert {k: v for k, v in owner_view.items() if v != (0, 0)} == _balances(client)
    audit = _ok(owner.get("/api/owner/audit"))
    actions = [r["action"] for r in audit["items"]]
    assert "approve_withdrawal" in actions and actions.count("create_member") == 2, actions

    assert _ok(owner.get("/v1/owner/deposits/alerts"))["alerts"] == []
    assert _ok(owner.get("/v1/owner/deposits/suspense"))["suspense"] == {"AZC": 0, "SATS": 0}

    engine = make_engine(ex.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            report = verify(session)
            assert report.ok, report.problems
            assert report.per_asset_sum and set(report.per_asset_sum.values()) == {0}
            lowest = session.scalar(
                select(func.min(Account.balance)).where(Account.member_id.is_not(None))
            )
            assert lowest is not None and lowest >= 0
            node_wallet = dict(
                session.execute(
                    select(Account.asset, Account.balance).where(Account.system_name == NODE_WALLET)
                ).all()
            )
    finally:
        engine.dispose()
    # the node_wallet accounts mirror the wallets: deposits in, withdrawals and the network
    # fees the wallets really paid out (booked at confirmation)
    for on, asset, wd, paid_in in (
        (btc, "SATS", a_wd, B_DEPOSIT_SATS),
        (azc, "AZC", b_wd, A_DEPOSIT_AZC),
    ):
        done = _ok(owner.get(f"/v1/owner/withdrawals/{wd['id']}"))
        assert done["network_fee"] is not None and done["network_fee"] > 0, done
        held = on.wallet_balance()
        assert held == paid_in - wd["amount"] - done["network_fee"]
        assert node_wallet[asset] == -held

    # every member's history holds only their own movements, and adds up to the balances
    own = {
        "alice": {f"deposit:azcoin:{a_txid}:{a_dep['vout']}", f"withdrawal:{a_wd['id']}:settle"},
        "bob": {f"deposit:bitcoin:{b_txid}:{b_dep['vout']}", f"withdrawal:{b_wd['id']}:settle"},
    }
    trade_refs = {f"trade:AZC/SATS:{t['seq']}" for t in a_items}
    assert trade_refs == {f"trade:AZC/SATS:{t['seq']}" for t in b_items}
    for handle, client in members.items():
        items = _ok(client.get("/api/history", params={"limit": 500}))["items"]
        refs = {i["reference"] for i in items if i["kind"] != "trade"}
        assert refs == own[handle], (handle, refs)
        traded = {i["reference"] for i in items if i["kind"] == "trade"}
        assert traded == trade_refs
        totals: dict[str, int] = {}
        for i in items:
            totals[i["asset"]] = totals.get(i["asset"], 0) + i["amount"]
        assert totals == {k: v[0] for k, v in _balances(client).items()}
        exported = client.get("/api/history.csv")
        assert exported.status_code == 200 and exported.headers["content-type"].startswith(
            "text/csv"
        )
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert sorted(int(r["id"]) for r in rows) == sorted(i["id"] for i in items)
        assert {r["reference"] for r in rows if r["kind"] != "trade"} == own[handle]
        other = "bob" if handle == "alice" else "alice"
        assert not any(own_ref in exported.text for own_ref in own[other])
        deposits = _ok(client.get("/v1/deposits"))["deposits"]
        assert [d["id"] for d in deposits] == [a_dep["id"] if handle == "alice" else b_dep["id"]]
        wds = _ok(client.get("/v1/withdrawals"))["withdrawals"]
        assert [w["id"] for w in wds] == [a_wd["id"] if handle == "alice" else b_wd["id"]]

    # B asking for A's things: the same 404 as for something missing, and nothing changes
    assert b.get(f"/api/orders/{sell_high['id']}").status_code == 404
    assert b.delete(f"/api/orders/{sell_high['id']}").status_code == 404
    assert b.get(f"/v1/withdrawals/{a_wd['id']}").status_code == 404
    assert b.post(f"/v1/withdrawals/{a_wd['id']}/cancel").status_code == 404
    assert _ok(a.get(f"/api/orders/{sell_high['id']}"))["status"] == "open"
    assert _ok(httpx.get(f"{ex.url}/api/orders"))["asks"] == [[1020, 5]]
