"""Withdrawals through the chain API: at most one payment per idempotency key, even when the
API dies while the wallet is sending."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from simnet.pytest_chain import ChainNode
from tests.integration.chain_api.handle import ChainApi


def test_send_happens_once_per_idempotency_key(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi]
) -> None:
    api = start_chain_api(funded_node)
    target = funded_node.rpc("getnewaddress", wallet="wallet")
    body = {"address": target, "amount_sats": 150_000, "idempotency_key": "withdrawal-0001"}
    with api.client("send") as client:
        first = client.post("/v1/send", json=body)
        assert first.status_code == 201, first.text
        again = client.post("/v1/send", json=body)
        assert again.status_code == 200
        assert again.json() == {**first.json(), "replayed": True}
        changed = client.post("/v1/send", json={**body, "amount_sats": 150_001})
        assert changed.status_code == 409
        too_much = {**body, "amount_sats": 10**15, "idempotency_key": "withdrawal-0002"}
        broke = client.post("/v1/send", json=too_much)
        assert broke.status_code == 409
        assert "insufficient funds" in broke.json()["detail"]
        bad = {**body, "address": "bcrt1qnotanaddressatall0000", "idempotency_key": "w-0003xx"}
        assert client.post("/v1/send", json=bad).status_code == 422
    sends = [
        t
        for t in funded_node.rpc("listtransactions", "*", 100, wallet="wallet")
        if t["category"] == "send" and t.get("comment") == "scnode-send:withdrawal-0001"
    ]
    assert len({t["txid"] for t in sends}) == 1


def test_a_send_whose_answer_was_lost_is_found_not_repeated(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi]
) -> None:
    """The API was killed after the wallet sent but before it recorded the txid."""
    api = start_chain_api(funded_node)
    target = funded_node.rpc("getnewaddress", wallet="wallet")
    body = {"address": target, "amount_sats": 90_000, "idempotency_key": "withdrawal-lost-1"}
    # make the wallet slow to answer so the API dies while the send is in flight
    funded_node.stall(seconds=1.5, method="sendtoaddress")
    with api.client("send") as client, pytest.raises(httpx.HTTPError):
        client.post("/v1/send", json=body, timeout=0.5)
    api.kill9()
    time.sleep(1.5)  # the daemon finished the send meanwhile
    api.start()
    with api.client("send") as client:
        retry = client.post("/v1/send", json=body)
        assert retry.status_code == 200, retry.text
        assert retry.json()["replayed"] is True
    comment = "scnode-send:withdrawal-lost-1"
    sends = {
        t["txid"]
        for t in funded_node.rpc("listtransactions", "*", 100, wallet="wallet")
        if t["category"] == "send" and t.get("comment") == comment
    }
    assert sends == {retry.json()["txid"]}


def test_cached_balance_moves_at_once_with_blocks_and_our_sends(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi]
) -> None:
    # A cache lifetime far longer than the test: each new figure must come from invalidation.
    api = start_chain_api(funded_node, ADDRESS_CACHE_SECONDS="60")
    mine = funded_node.rpc("getnewaddress", wallet="wallet")

    def balance() -> dict[str, int]:
        with api.client() as client:
            body: dict[str, int] = client.get("/v1/wallet/balance").json()
        return body

    first = balance()
    assert balance() == first  # served from memory
    funded_node.mine(1, mine)  # one more coinbase immature, an older one matures
    deadline = time.monotonic() + 10
    while balance() == first:
        assert time.monotonic() < deadline, "the block never reached the cached balance"
        time.sleep(0.05)
    after_block = balance()
    assert after_block["trusted_sats"] > first["trusted_sats"]
    body = {"address": mine, "amount_sats": 10_000, "idempotency_key": "cache-check-0001"}
    with api.client("send") as client:
        assert client.post("/v1/send", json=body).status_code == 201
    after_send = balance()  # at once: the send itself ends the entry, no ZMQ wait
    assert after_send != after_block
    assert (
        after_send["trusted_sats"] + after_send["untrusted_pending_sats"]
        < (after_block["trusted_sats"])
    )


def test_a_retry_while_the_first_send_still_runs_in_the_node_is_not_sent_again(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi]
) -> None:
    """The API died while the daemon was still inside sendtoaddress (stalled): a retry then
    finds nothing in the wallet yet. It must answer "retry later" instead of sending again,
    and once the first call has paid, the retry gets that one payment (the double payment the
    assurance fault test found under a stalling daemon)."""
    api = start_chain_api(funded_node)
    target = funded_node.rpc("getnewaddress", wallet="wallet")
    body = {"address": target, "amount_sats": 70_000, "idempotency_key": "withdrawal-stall-1"}
    funded_node.stall(seconds=6, method="sendtoaddress")
    with api.client("send") as client, pytest.raises(httpx.HTTPError):
        client.post("/v1/send", json=body, timeout=0.5)
    api.kill9()
    api.start()
    with api.client("send") as client:
        early = client.post("/v1/send", json=body)
        assert early.status_code == 503, early.text
        assert "still be running" in early.json()["detail"]
        deadline = time.monotonic() + 30
        while True:
            retry = client.post("/v1/send", json=body)
            if retry.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert retry.status_code == 200, retry.text
        assert retry.json()["replayed"] is True
    sends = [
        t
        for t in funded_node.rpc("listtransactions", "*", 100, wallet="wallet")
        if t["category"] == "send" and t.get("comment") == "scnode-send:withdrawal-stall-1"
    ]
    assert len({t["txid"] for t in sends}) == 1
    assert {t["txid"] for t in sends} == {retry.json()["txid"]}


def test_a_send_the_wallet_cannot_build_is_a_refusal_not_a_502(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi]
) -> None:
    """Fuzzing: an amount that cannot even pay its own fee (``subtract_fee``) was the
    daemon's "amount too small" error, passed on as a 502 and left pending (retried
    forever by a withdrawal worker). bitcoind's sendtoaddress answers every transaction it
    cannot build with -6 and the reason; nothing was sent, so it is a definite 422 (409 only
    for insufficient funds), and the same request again gets the same refusal."""
    api = start_chain_api(funded_node)
    target = funded_node.rpc("getnewaddress", wallet="wallet")
    with api.client("send") as client:
        for amount, subtract in ((1, True), (200, True)):
            body = {"address": target, "amount_sats": amount, "subtract_fee": subtract,
                    "idempotency_key": f"fuzz-small-{amount}-{subtract}"}  # fmt: skip
            reply = client.post("/v1/send", json=body)
            assert reply.status_code == 422, (body, reply.status_code, reply.text)
            again = client.post("/v1/send", json=body)
            assert again.status_code == 409, again.text
            assert "already failed" in again.json()["detail"]
