"""The chain API as the exchange and the owner use it, against a running chain daemon."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from simnet.pytest_chain import ChainNode
from tests.integration.chain_api.handle import ChainApi


def _ws(api: ChainApi, cursor: int | None = None, scope: str = "read") -> Any:
    query = f"?cursor={cursor}" if cursor is not None else ""
    return connect(
        f"ws://127.0.0.1:{api.port}/v1/events/ws{query}",
        additional_headers=api.headers(scope),
        open_timeout=5,
    )


def _next_event(ws: Any, kind: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event: dict[str, Any] = json.loads(ws.recv(timeout=deadline - time.monotonic()))
        if event["kind"] == kind and all(event["data"].get(k) == v for k, v in match.items()):
            return event
    raise AssertionError(f"no {kind} event matching {match} within {timeout}s")


@pytest.mark.parametrize(
    ("coin", "network", "prefix", "hrp"),
    [("bitcoin", "regtest", "btc", "bcrt1"), ("azcoin", "main", "az", "az1")],
)
def test_member_gets_a_labelled_address_of_the_chain(
    start_chain_node: Callable[..., ChainNode],
    start_chain_api: Callable[..., ChainApi],
    coin: str,
    network: str,
    prefix: str,
    hrp: str,
) -> None:
    node = start_chain_node(coin=coin, network=network)
    node.rpc("createwallet", "wallet")
    api = start_chain_api(node, prefix=prefix)
    with api.client("deposit") as client:
        first = client.post("/v1/members/alice/addresses")
        assert first.status_code == 201, first.text
        address = first.json()["address"]
        assert address.startswith(hrp)
        assert node.rpc("getaddressinfo", address, wallet="wallet")["labels"] == ["alice"]
        # "current unused address": the same one until it is paid
        again = client.post("/v1/members/alice/addresses", params={"reuse_unused": True})
        assert again.json() == {"member_id": "alice", "address": address, "new": False}
        other = client.post("/v1/members/bob/addresses").json()["address"]
        assert other != address
        mine = client.get("/v1/members/alice/addresses").json()
        assert [a["address"] for a in mine["addresses"]] == [address]
        assert client.post("/v1/members/../addresses").status_code in (404, 422)
        assert client.post("/v1/members/a b/addresses").status_code == 422


def test_deposit_is_pushed_then_confirmed_and_totals_follow(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi]
) -> None:
    api = start_chain_api(funded_node)
    with api.client("deposit") as client:
        address = client.post("/v1/members/m42/addresses").json()["address"]
    # the payer's first payment funds it (101 blocks mined to it, the stand-in's simulated
    # world and a real node's funder wallet alike): done here, outside the timed window
    funded_node.pay(funded_node.rpc("getnewaddress", wallet="wallet"), 10_000)
    with _ws(api) as ws:
        started = time.monotonic()
        txid = funded_node.pay(address, 250_000)
        seen = _next_event(ws, "wallet_tx", txid=txid)
        latency = time.monotonic() - started
        assert seen["data"]["label"] == "m42"
        assert seen["data"]["amount_sats"] == 250_000
        assert seen["data"]["confirmations"] == 0
        assert latency < 2.0, f"deposit took {latency:.3f}s to reach the WebSocket"
        funded_node.mine(1)
        confirmed = _next_event(ws, "wallet_tx", txid=txid, confirmations=1)
        assert confirmed["data"]["blockhash"]
    with api.client() as client:
        totals = client.get("/v1/members/m42/addresses").json()
        assert (totals["received_sats"], totals["confirmed_sats"]) == (250_000, 250_000)
        detail = client.get(f"/v1/transactions/{txid}").json()
        assert detail["confirmations"] == 1
        assert client.get(f"/v1/addresses/{address}").json()["confirmed_sats"] == 250_000


def test_reorg_takes_the_confirmation_back(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi]
) -> None:
    api = start_chain_api(funded_node)
    with api.client("deposit") as client:
        address = client.post("/v1/members/m1/addresses").json()["address"]
    with _ws(api) as ws:
        txid = funded_node.pay(address, 40_000)
        funded_node.mine(1)
        _next_event(ws, "wallet_tx", txid=txid, confirmations=1)
        funded_node.reorg(1, drop_txs=True)
        removed = _next_event(ws, "tx_removed", txid=txid)
        assert removed["data"]["confirmations"] == 1  # what it had before the reorg
    with api.client() as client:
        assert client.get("/v1/members/m1/addresses").json()["confirmed_sats"] == 0


def test_cached_address_reads_follow_payments_blocks_and_reorgs_at_once(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi]
) -> None:
    # A cache lifetime far longer than the test: every fresh figure below must come from the
    # watcher invalidating the entry, not from the entry expiring.
    api = start_chain_api(funded_node, ADDRESS_CACHE_SECONDS="60")
    with api.client("deposit") as client:
        address = client.post("/v1/members/m7/addresses").json()["address"]

    def amounts() -> tuple[int, int]:
        with api.client() as client:
            body = client.get(f"/v1/addresses/{address}").json()
        return body["received_sats"], body["confirmed_sats"]

    with _ws(api) as ws:
        assert amounts() == (0, 0)
        assert amounts() == (0, 0)  # served from memory
        txid = funded_node.pay(address, 70_000)
        _next_event(ws, "wallet_tx", txid=txid, confirmations=0)
        assert amounts() == (70_000, 0)
        funded_node.mine(1)
        _next_event(ws, "wallet_tx", txid=txid, confirmations=1)
        assert amounts() == (70_000, 70_000)
        funded_node.reorg(1, drop_txs=True)
        removed = _next_event(ws, "tx_removed", txid=txid)
        assert removed["data"]["back_in_mempool"] is True
        assert amounts() == (70_000, 0)  # unconfirmed again, no longer confirmed
    with api.client() as client:
        metrics = client.get("/metrics").text
    hits = re.search(
        r'scnode_chain_api_read_cache_lookups\{read="address",result="hit"\} (\S+)', metrics
    )
    assert hits is not None and float(hits.group(1)) >= 1


def test_client_that_reconnects_with_its_cursor_misses_nothing(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi]
) -> None:
    api = start_chain_api(funded_node)
    with api.client("deposit") as client:
        address = client.post("/v1/members/m7/addresses").json()["address"]
    with _ws(api) as ws:
        first = funded_node.pay(address, 1_000)
        cursor = _next_event(ws, "wallet_tx", txid=first)["id"]
    # disconnected: a payment and a block happen meanwhile
    second = funded_node.pay(address, 2_000)
    funded_node.mine(1)
    time.sleep(1.0)
    with _ws(api, cursor=cursor) as ws:
        _next_event(ws, "wallet_tx", txid=second, confirmations=0)
        _next_event(ws, "wallet_tx", txid=first, confirmations=1)


def test_api_restart_catches_up_from_the_wallet(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi]
) -> None:
    api = start_chain_api(funded_node)
    with api.client("deposit") as client:
        address = client.post("/v1/members/m9/addresses").json()["address"]
    api.kill9()
    txid = funded_node.pay(address, 77_000)  # nobody listens to ZMQ now
    funded_node.mine(2)
    api.start()
    with api.client() as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kinds = client.get("/v1/events/recent", params={"limit": 100}).json()["events"]
            hits = [e for e in kinds if e["kind"] == "wallet_tx" and e["data"]["txid"] == txid]
            if hits:
                break
            time.sleep(0.2)
        assert hits and hits[-1]["data"]["confirmations"] == 2


def test_api_down_for_more_blocks_than_it_tracks_misses_no_payment(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi]
) -> None:
    """Down while a payment confirms deeper than TRACK_CONFIRMATIONS (6 here): the restart
    still journals it (the fault test lost deposits this way when blocks came every second)."""
    api = start_chain_api(funded_node)
    with api.client("deposit") as client:
        address = client.post("/v1/members/m10/addresses").json()["address"]
    with api.client() as client:  # the API has reconciled (seen the tip) before it goes down
        deadline = time.monotonic() + 10
        while not any(
            e["kind"] == "block"
            for e in client.get("/v1/events/recent", params={"limit": 100}).json()["events"]
        ):
            assert time.monotonic() < deadline, "the API never reported the tip"
            time.sleep(0.2)
    api.kill9()
    txid = funded_node.pay(address, 66_000)
    funded_node.mine(10)
    api.start()
    with api.client() as client:
        deadline = time.monotonic() + 15
        hits: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not hits:
            kinds = client.get("/v1/events/recent", params={"limit": 100}).json()["events"]
            hits = [e for e in kinds if e["kind"] == "wallet_tx" and e["data"]["txid"] == txid]
            time.sleep(0.2)
        assert hits, "the payment confirmed while the API was down was never journalled"
        assert hits[-1]["data"]["confirmations"] == 10


def test_keys_and_scopes_are_enforced(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi]
) -> None:
    api = start_chain_api(funded_node)
    anonymous = httpx.get(f"{api.url}/v1/status")
    assert anonymous.status_code == 401
    assert (
        httpx.get(f"{api.url}/v1/status", headers={"Authorization": "Bearer x"}).status_code == 401
    )
    with api.client("read") as reader:
        assert reader.get("/v1/status").status_code == 200
        assert reader.post("/v1/members/m/addresses").status_code == 403
        body = {"address": "bcrt1qxyzxyzxyzxyzxyz", "amount_sats": 1, "idempotency_key": "k" * 10}
        assert reader.post("/v1/send", json=body).status_code == 403
        assert reader.get("/metrics").status_code == 200
    # a WebSocket without a key is refused at the handshake
    with pytest.raises(InvalidStatus):
        connect(f"ws://127.0.0.1:{api.port}/v1/events/ws", open_timeout=5)
    # public health stays minimal
    health = httpx.get(f"{api.url}/v1/health").json()
    assert set(health) == {"status", "version"}


def test_daemon_down_or_warming_up_is_a_503_with_a_reason(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi]
) -> None:
    api = start_chain_api(funded_node)
    funded_node.warmup("Verifying blocks…")
    with api.client() as client:
        warming = client.get("/v1/status")
        assert warming.status_code == 503
        assert "Verifying blocks" in warming.json()["detail"]
        funded_node.warmup(None)
        assert client.get("/v1/status").status_code == 200
        funded_node.kill()
        down = client.get("/v1/wallet/balance")
        assert down.status_code == 503
        assert "unavailable" in down.json()["detail"]
        assert "Traceback" not in down.text
        assert httpx.get(f"{api.url}/healthz").json()["status"] == "down"


def test_upstream_master_api_paths_answer_with_keys(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi]
) -> None:
    api = start_chain_api(funded_node)
    paths = [
        "/v1/btc/node/info",
        "/v1/btc/node/blockchain-info",
        "/v1/btc/node/peers",
        "/v1/btc/mempool/info",
        "/v1/btc/wallet/summary",
        "/v1/btc/wallet/transactions?limit=5",
        "/v1/btc/blocks/rewards?limit=500",
        "/v1/events/recent",
    ]
    with api.client() as client:
        for path in paths:
            assert httpx.get(f"{api.url}{path}").status_code == 401, path
            response = client.get(path)
            assert response.status_code == 200, (path, response.text)
        rewards = client.get("/v1/btc/blocks/rewards?limit=500").json()["rewards"]
        assert rewards and all(isinstance(r["amount_sats"], int) for r in rewards)
        assert any(r["mature"] for r in rewards) and any(not r["mature"] for r in rewards)
        summary = client.get("/v1/btc/wallet/summary").json()
        assert summary["trusted_sats"] > 0
        # a `since` block the daemon does not know is the caller's mistake, not a 502 (fuzzing)
        lastblock = client.get("/v1/btc/wallet/transactions").json()["lastblock"]
        assert client.get(f"/v1/btc/wallet/transactions?since={lastblock}").status_code == 200
        unknown = client.get(f"/v1/btc/wallet/transactions?since={'ab' * 32}")
        assert unknown.status_code == 422, unknown.text
        assert "no block with that hash" in unknown.json()["detail"]


def test_server_sent_events_stream_deposits_with_ids(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi]
) -> None:
    """Upstream master-api clients read /v1/events/stream (SSE); ids let them resume."""
    api = start_chain_api(funded_node)
    with api.client("deposit") as client:
        address = client.post("/v1/members/sse1/addresses").json()["address"]
    assert httpx.get(f"{api.url}/v1/events/stream").status_code == 401
    with (
        httpx.Client(base_url=api.url, headers=api.headers(), timeout=15) as client,
        client.stream("GET", "/v1/events/stream") as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        txid = funded_node.pay(address, 33_000)
        event_id = kind = None
        for line in stream.iter_lines():
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "wallet_tx":
                data = json.loads(line[6:])
                if data["data"]["txid"] == txid:
                    assert data["id"] == event_id
                    assert data["data"]["amount_sats"] == 33_000
                    break


def test_upstream_send_path_is_the_same_idempotent_send(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi]
) -> None:
    api = start_chain_api(funded_node)
    target = funded_node.rpc("getnewaddress", wallet="wallet")
    body = {"address": target, "amount_sats": 12_345, "idempotency_key": "upstream-send-1"}
    assert httpx.post(f"{api.url}/v1/tx/send", json=body).status_code == 401
    with api.client("send") as client:
        first = client.post("/v1/tx/send", json=body)
        assert first.status_code == 201, first.text
        again = client.post("/v1/send", json=body)
        assert again.json()["txid"] == first.json()["txid"]
        assert again.json()["replayed"] is True


def test_double_spent_deposit_is_removed_as_a_conflict(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi]
) -> None:
    api = start_chain_api(funded_node)
    with api.client("deposit") as client:
        address = client.post("/v1/members/ds1/addresses").json()["address"]
    with _ws(api) as ws:
        txid = funded_node.pay(address, 64_000)
        _next_event(ws, "wallet_tx", txid=txid, confirmations=0)
        funded_node.control("double_spend", txid=txid, mine=True)
        removed = _next_event(ws, "tx_removed", txid=txid)
        assert removed["data"]["reason"] == "conflict"
    with api.client() as client:
        assert client.get("/v1/members/ds1/addresses").json()["received_sats"] == 0
