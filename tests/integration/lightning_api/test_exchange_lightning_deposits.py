"""LaaS deposits end to end: the exchange's Lightning deposit watcher and invoices against a
real Lightning API process in front of the simnet lightningd, paid by the simulated outside
world through the SC Cluster hub. Credited once, also across a watcher stop and an API kill,
and the member's balance moves by what the node's channel received."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.db import make_engine, make_sessionmaker, upgrade
from scnode_exchange.ledger import Ledger
from scnode_exchange.ledger.models import JournalEntry
from scnode_exchange.lightning import LightningApiClient, LightningDeposits
from simnet.pytest_lightning import wait_for
from tests.integration.lightning_api.handle import LightningApi, LightningPair

T = TypeVar("T")


class Loop:
    """An event loop in a thread: the watcher runs there while the test drives the world."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Watching:
    """A LightningDeposits watcher running until stopped."""

    def __init__(self, loop: Loop, deposits: LightningDeposits) -> None:
        self.loop = loop
        self.stop_event: asyncio.Event = loop.run(_event())
        self.future = asyncio.run_coroutine_threadsafe(deposits.run(self.stop_event), loop.loop)

    def stop(self) -> None:
        self.loop.loop.call_soon_threadsafe(self.stop_event.set)
        self.future.result(30)


async def _event() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
def loop() -> Iterator[Loop]:
    handle = Loop()
    yield handle
    handle.close()


@pytest.fixture
def exchange(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'exchange.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        Ledger(session).ensure_assets()
    yield sessions
    engine.dispose()


def test_member_invoices_are_credited_once_across_watcher_and_api_restarts(
    shared_pair: LightningPair,
    start_lightning_api: Callable[..., LightningApi],
    exchange: sessionmaker[Session],
    loop: Loop,
) -> None:
    node, hub = shared_pair
    api = start_lightning_api(node, hub.node_id)
    with exchange.begin() as session:
        alice = Ledger(session).create_member("alice").id

    def sats() -> int:
        with exchange() as session:
            return Ledger(session).member_account(alice, "SATS").balance

    def channel_local_msat() -> int:
        return int(node.rpc.listpeerchannels()["channels"][0]["to_us_msat"])

    local_before = channel_local_msat()

    def deposits() -> LightningDeposits:
        return LightningDeposits(exchange, LightningApiClient(api.url, api.tokens["invoice"]))

    first_run = deposits()
    watching = Watching(loop, first_run)
    invoice = loop.run(first_run.create_invoice(alice, 30_000, "ln-deposit-0001", "top up"))
    again = loop.run(first_run.create_invoice(alice, 30_000, "ln-deposit-0001", "top up"))
    assert again["bolt11"] == invoice["bolt11"]
    hub.pay_from_outside(invoice["bolt11"])
    wait_for(lambda: sats() == 30_000, 30, "first deposit credited")

    second = loop.run(first_run.create_invoice(alice, 12_345, "ln-deposit-0002"))
    watching.stop()
    api.kill9()  # the API misses the payment's cl-zmq message too
    hub.pay_from_outside(second["bolt11"])
    api.start()
    assert sats() == 30_000
    watching = Watching(loop, deposits())
    wait_for(lambda: sats() == 42_345, 30, "second deposit credited after restarts")
    watching.stop()
    watching = Watching(loop, deposits())  # once more: nothing is credited twice
    loop.run(asyncio.sleep(1.5))
    watching.stop()
    assert sats() == 42_345
    with exchange() as session:
        references = session.scalars(
            select(JournalEntry.reference).where(JournalEntry.reference.like("ln:invoice:%"))
        ).all()
    # the exchange ledger, the Lightning API and the channel agree
    assert channel_local_msat() - local_before == 42_345 * 1000
    assert sorted(str(r) for r in references) == sorted(
        f"ln:invoice:{i['payment_hash']}" for i in (invoice, second)
    )
