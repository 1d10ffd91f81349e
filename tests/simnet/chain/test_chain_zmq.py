"""ZMQ notifications: frames, counters, and the order the recorded bitcoind v30 produced."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest
import zmq

from simnet.chain.crypto import p2wpkh_script, pubkey_of, segwit_address
from simnet.pytest_chain import ChainNode
from tests.upstream_fixtures import FIXTURES

FIXTURE_ZMQ = FIXTURES / "bitcoind-v30" / "zmq"


class Subscriber:
    def __init__(self, endpoints: dict[str, str]) -> None:
        self.ctx = zmq.Context()
        self.socks = {}
        for topic in ("hashblock", "rawtx", "sequence", "hashtx"):
            sock = self.ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoints[topic])
            self.socks[topic] = sock
        time.sleep(0.4)  # slow joiner

    def drain(self, topic: str, settle: float = 0.3) -> list[list[bytes]]:
        out = []
        sock = self.socks[topic]
        deadline = time.time() + settle
        while time.time() < deadline:
            if sock.poll(50):
                out.append(sock.recv_multipart())
                deadline = time.time() + settle
        return out

    def close(self) -> None:
        for sock in self.socks.values():
            sock.close(0)
        self.ctx.term()


@pytest.fixture
def sub(chain_node: ChainNode) -> Iterator[Subscriber]:
    s = Subscriber(chain_node.zmq)
    yield s
    s.close()


def _labels(msgs: list[list[bytes]]) -> list[str]:
    return [m[1][32:33].decode() for m in msgs]


def test_frames_and_counters(chain_node: ChainNode, sub: Subscriber) -> None:
    chain_node.rpc("createwallet", "w")
    hashes = chain_node.rpc("generatetoaddress", 3, chain_node.rpc("getnewaddress"))
    blocks = sub.drain("hashblock")
    assert [m[1].hex() for m in blocks] == hashes
    assert [int.from_bytes(m[2], "little") for m in blocks] == [0, 1, 2]
    assert all(len(m) == 3 and m[0] == b"hashblock" for m in blocks)
    seq = sub.drain("sequence")
    assert [(len(m[1]), m[1][32:33]) for m in seq] == [(33, b"C")] * 3
    assert [m[1][:32].hex() for m in seq] == hashes
    notifications = chain_node.rpc("getzmqnotifications")
    assert {n["type"] for n in notifications} >= {"pubhashblock", "pubrawtx", "pubsequence"}


def test_send_mine_and_invalidate_follow_the_recording(
    chain_node: ChainNode, sub: Subscriber
) -> None:
    recorded = (
        [json.loads(line) for line in (FIXTURE_ZMQ / "all_messages.jsonl").read_text().splitlines()]
        if FIXTURE_ZMQ.exists()
        else []
    )
    chain_node.rpc("createwallet", "w")
    address = chain_node.rpc("getnewaddress")
    chain_node.rpc("generatetoaddress", 101, address)
    sub.drain("sequence")
    sub.drain("rawtx")
    sub.drain("hashblock")
    outside = segwit_address("bcrt", p2wpkh_script(pubkey_of(os.urandom(32))))
    first = chain_node.rpc("sendtoaddress", outside, 1)
    chain_node.rpc("generatetoaddress", 1, address)
    second = chain_node.rpc("sendtoaddress", outside, 1)
    block2 = chain_node.rpc("generatetoaddress", 1, address)[0]
    block1 = chain_node.rpc("getblockhash", 102)
    seq = sub.drain("sequence")
    assert _labels(seq) == ["A", "C", "A", "C"]
    assert [int.from_bytes(m[1][33:], "little") for m in seq if len(m[1]) == 41] == [1, 3]
    assert [m[1].hex() for m in sub.drain("hashblock")] == [block1, block2]
    sub.drain("rawtx")
    chain_node.rpc("invalidateblock", block1)
    seq = sub.drain("sequence")
    assert [(m[1][:32].hex(), m[1][32:33].decode()) for m in seq] == [
        (block2, "D"),
        (second, "A"),
        (block1, "D"),
        (first, "A"),
    ]
    assert [int.from_bytes(m[1][33:], "little") for m in seq if len(m[1]) == 41] == [5, 6]
    assert sub.drain("hashblock") == []  # invalidateblock announces no new tip
    # rawtx on disconnect: coinbase, tx, then the tx again on re-entry to the mempool (per block)
    raw = sub.drain("rawtx")
    assert len(raw) == 6
    if recorded:
        phase = [m for m in recorded if m["phase"] == "reorg_invalidateblock"]
        recorded_labels = [
            m["decoded"]["label"] for m in phase if m["decoded"]["topic"] == "sequence"
        ]
        assert recorded_labels == ["D", "A", "D", "A"]
        assert len([m for m in phase if m["decoded"]["topic"] == "rawtx"]) == len(raw)
    chain_node.rpc("generatetoaddress", 3, address)
    seq = sub.drain("sequence")
    assert _labels(seq) == ["C", "C", "C"]
    assert len(sub.drain("hashblock")) == 3


def test_control_reorg_and_double_spend(chain_node: ChainNode, sub: Subscriber) -> None:
    chain_node.rpc("createwallet", "w")
    deposit = chain_node.rpc("getnewaddress", "member:1")
    paid = chain_node.pay(deposit, 50_000)
    sub.drain("sequence")
    chain_node.mine(1)
    assert chain_node.rpc("gettransaction", paid)["confirmations"] == 1
    sub.drain("sequence")
    result = chain_node.reorg(1, drop_txs=True)
    assert len(result["connected"]) == 2
    labels = _labels(sub.drain("sequence"))
    assert labels[:3] == ["D", "C", "C"] and labels[3:] == ["A", "R"]
    assert chain_node.rpc("gettransaction", paid)["confirmations"] == 0
    assert paid not in chain_node.rpc("getrawmempool")
    again = chain_node.pay(deposit, 70_000)
    sub.drain("sequence")
    ds = chain_node.control("double_spend", txid=again)
    assert ds["replaced"] == again
    seq = sub.drain("sequence")
    assert [(m[1][:32].hex(), m[1][32:33].decode()) for m in seq] == [
        (again, "R"),
        (ds["txid"], "A"),
    ]
    assert chain_node.rpc("getbalances")["mine"]["untrusted_pending"] == 0


def test_double_spent_deposit_shows_negative_confirmations(chain_node: ChainNode) -> None:
    chain_node.rpc("createwallet", "w")
    deposit = chain_node.rpc("getnewaddress", "member:2")
    paid = chain_node.pay(deposit, 80_000)
    assert chain_node.rpc("gettransaction", paid)["confirmations"] == 0
    chain_node.control("double_spend", txid=paid, mine=True)
    chain_node.mine(2)
    tx = chain_node.rpc("gettransaction", paid)
    assert tx["confirmations"] == -3 and tx["trusted"] is False
    assert chain_node.rpc("getbalances")["mine"]["untrusted_pending"] == 0
