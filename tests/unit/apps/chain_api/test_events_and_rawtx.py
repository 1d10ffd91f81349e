"""The chain API's fast path and journal, without a daemon: a real serialized transaction that
pays a watched address becomes one event; a client resuming with a cursor misses nothing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from bitcoin import segwit_addr
from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxOut, b2lx, lx

from scnode_chain_api.events import EventBus
from scnode_chain_api.store import ChainApiStore, Event
from scnode_chain_api.watcher import ChainWatcher, script_of
from scnode_core.chain_rpc import ChainRpcClient, RpcEndpoint


def _address(hrp: str) -> tuple[str, bytes]:
    program = os.urandom(20)
    address = segwit_addr.encode(hrp, 0, program)
    assert address is not None
    return address, bytes([0, 20, *program])


def _tx_paying(script: bytes, sats: int) -> CTransaction:
    prevout = COutPoint(lx("11" * 32), 0)
    other = bytes([0, 20, *os.urandom(20)])
    return CTransaction([CTxIn(prevout)], [CTxOut(5_000, other), CTxOut(sats, script)])


@pytest.mark.parametrize("hrp", ["bc", "az", "bcrt", "lm"])
def test_script_of_matches_the_address_program_for_any_hrp(hrp: str) -> None:
    address, script = _address(hrp)
    assert script_of(address) == script.hex()


def test_script_of_refuses_non_segwit() -> None:
    assert script_of("1BoatSLRHtKNngkdXEeobR76b53LETtpyT") is None


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChainApiStore]:
    s = ChainApiStore(tmp_path / "state.sqlite")
    yield s
    s.close()


async def _watcher(store: ChainApiStore, bus: EventBus) -> ChainWatcher:
    rpc = ChainRpcClient(RpcEndpoint("http://127.0.0.1:9", "u", "p"))
    return ChainWatcher(rpc, store, bus, wallet="wallet", track_confirmations=6, zmq_endpoints={})


@pytest.mark.anyio
async def test_rawtx_paying_a_member_address_is_one_event(store: ChainApiStore) -> None:
    bus = EventBus(store)
    watcher = await _watcher(store, bus)
    address, script = _address("az")
    await watcher.watch(address, "member-7")
    tx = _tx_paying(script, 123_456)
    watcher.on_rawtx(tx.serialize())
    watcher.on_rawtx(tx.serialize())  # again when the block connects: no second event
    events = store.events_after(0)
    assert [e.kind for e in events] == ["wallet_tx"]
    data = events[0].data
    assert data["txid"] == b2lx(tx.GetTxid())
    assert (data["vout"], data["label"], data["amount_sats"]) == (1, "member-7", 123_456)
    assert data["confirmations"] == 0


@pytest.mark.anyio
async def test_rawtx_not_for_us_and_garbage_are_ignored(store: ChainApiStore) -> None:
    bus = EventBus(store)
    watcher = await _watcher(store, bus)
    address, _ = _address("bc")
    await watcher.watch(address, "m1")
    _, foreign = _address("bc")
    watcher.on_rawtx(_tx_paying(foreign, 1000).serialize())
    watcher.on_rawtx(b"\x00\x01garbage")
    assert store.events_after(0) == []


@pytest.mark.anyio
async def test_resume_from_cursor_replays_then_streams_live(store: ChainApiStore) -> None:
    bus = EventBus(store)
    for height in range(5):
        bus.publish("block", {"height": height})
    received: list[int] = []

    async def consume() -> None:
        async for event in bus.stream(2):
            received.append(event.data["height"])
            if len(received) == 4:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    bus.publish("block", {"height": 5})
    await asyncio.wait_for(task, 2)
    assert received == [2, 3, 4, 5]
    assert bus.subscriber_count == 0


@pytest.mark.anyio
async def test_a_subscriber_that_falls_behind_is_cut_off_and_can_resume(
    store: ChainApiStore,
) -> None:
    bus = EventBus(store, queue_size=2)
    delivered: list[int] = []

    async def slow_consumer() -> None:
        async for event in bus.stream(0):
            delivered.append(event.id)

    task = asyncio.create_task(slow_consumer())
    await asyncio.sleep(0.01)
    for height in range(5):
        bus.publish("block", {"height": height})  # publisher never waits for the consumer
    await asyncio.wait_for(task, 1)  # the overflowing stream ended instead of blocking
    assert len(delivered) < 5
    assert bus.subscriber_count == 0
    resumed = [e.id async for e in _take(bus, delivered[-1] if delivered else 0, 5)]
    assert delivered + resumed == [e.id for e in store.events_after(0)]


async def _take(bus: EventBus, cursor: int, total: int) -> AsyncIterator[Event]:
    async for event in bus.stream(cursor):
        yield event
        if event.id >= total:
            return
