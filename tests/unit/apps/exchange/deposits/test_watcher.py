"""The deposit watcher against an in-process chain API (fakechain.py): events → pending →
credited at N; duplicated events; a stopped watcher catches up (journal replay, and from the
wallet when the journal was pruned); a reorg event is checked with the wallet before a credit
is reversed. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.chainclient import Backoff, ChainApiClient
from scnode_exchange.deposits.service import DepositService
from scnode_exchange.deposits.watcher import DepositWatcher
from scnode_exchange.ledger import SATS, SUSPENSE, Ledger, verify
from tests.unit.apps.exchange.deposits.fakechain import KEY, FakeChainApi, wait_for

Scenario = Callable[[FakeChainApi, DepositService, Callable[[], "Running"]], Awaitable[None]]


class Running:
    """A watcher task that can be stopped (like a process being stopped) and started again."""

    def __init__(self, watcher: DepositWatcher) -> None:
        self.watcher = watcher
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(watcher.run(self.stop))

    async def following(self) -> None:
        await asyncio.wait_for(self.watcher.progress["bitcoin"].following.wait(), 15)

    async def halt(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 15)


def _run(sessions: sessionmaker[Session], deposits: DepositService, scenario: Scenario) -> None:
    async def main() -> None:
        fake = FakeChainApi()
        url = await fake.start()
        clients: list[ChainApiClient] = []

        def start() -> Running:
            client = ChainApiClient(url, KEY, timeout=10, backoff=Backoff(0.01, 0.05))
            clients.append(client)
            service = DepositService(sessions, deposits.chains)  # a fresh process each time
            return Running(DepositWatcher(service, {"bitcoin": client}, refresh_below=10))

        try:
            await scenario(fake, deposits, start)
        finally:
            for client in clients:
                await client.aclose()
            await fake.stop()

    asyncio.run(main())


def _balance(sessions: sessionmaker[Session], member_id: int, name: str | None = None) -> int:
    with sessions() as session:
        ledger = Ledger(session)
        account = (
            ledger.system_account(name, SATS) if name else ledger.member_account(member_id, SATS)
        )
        return account.balance


def test_events_credit_at_n_once_even_when_duplicated(
    sessions: sessionmaker[Session], deposits: DepositService, members: tuple[int, int]
) -> None:
    alice, bob = members

    async def scenario(
        fake: FakeChainApi, deposits: DepositService, start: Callable[[], Running]
    ) -> None:
        fake.duplicate_events = True
        a_addr, b_addr = fake.new_address(str(alice)), fake.new_address(str(bob))
        deposits.record_address(alice, "bitcoin", a_addr)
        deposits.record_address(bob, "bitcoin", b_addr)
        running = start()
        await running.following()
        fake.pay(a_addr, 40_000)
        fake.pay(b_addr, 9_000)
        await wait_for(lambda: len(deposits.pending(alice)) == 1 and len(deposits.pending(bob)))
        fake.mine(2)
        await wait_for(lambda: [d.confirmations for d in deposits.pending(alice)] == [2])
        assert _balance(sessions, alice) == 0
        fake.mine(1)
        await wait_for(lambda: _balance(sessions, alice) == 40_000)
        fake.mine(3)
        await wait_for(lambda: deposits.history(alice)[0].confirmations == 6)
        await wait_for(lambda: deposits.cursor("bitcoin")[0] == fake.journal[-1]["id"])
        await running.halt()
        assert (_balance(sessions, alice), _balance(sessions, bob)) == (40_000, 9_000)
        assert running.watcher.metrics.credited.labels("bitcoin")._value.get() == 2
        cursor, tip = deposits.cursor("bitcoin")
        assert (cursor, tip) == (fake.journal[-1]["id"], fake.height)

    _run(sessions, deposits, scenario)


def test_a_stopped_watcher_misses_nothing_and_credits_nothing_twice(
    sessions: sessionmaker[Session], deposits: DepositService, members: tuple[int, int]
) -> None:
    alice, bob = members

    async def scenario(
        fake: FakeChainApi, deposits: DepositService, start: Callable[[], Running]
    ) -> None:
        a_addr, b_addr = fake.new_address(str(alice)), fake.new_address(str(bob))
        deposits.record_address(alice, "bitcoin", a_addr)
        deposits.record_address(bob, "bitcoin", b_addr)
        running = start()
        await running.following()
        fake.pay(a_addr, 1_000)
        fake.mine(3)
        await wait_for(lambda: _balance(sessions, alice) == 1_000)
        await running.halt()
        # while it is down: paid and confirmed (the journal still has the events)
        fake.pay(a_addr, 2_000)
        fake.mine(3)
        running = start()
        await wait_for(lambda: _balance(sessions, alice) == 3_000)
        assert running.watcher.progress["bitcoin"].full_catch_ups == 0
        await running.halt()
        # down again, and the chain API's journal forgets what happened meanwhile
        fake.pay(b_addr, 5_000)
        fake.mine(3)
        fake.pay(b_addr, 6_000)
        fake.prune_journal()
        running = start()
        await wait_for(lambda: _balance(sessions, bob) == 5_000)
        assert running.watcher.progress["bitcoin"].full_catch_ups == 1
        assert [d.amount for d in deposits.pending(bob)] == [6_000]
        fake.mine(3)
        await wait_for(lambda: _balance(sessions, bob) == 11_000)
        await running.halt()
        # a restart from scratch (no cursor: the first run) re-reads everything, credits nothing
        with sessions.begin() as session:
            session.execute(text("DELETE FROM deposit_cursors"))
        running = start()
        await running.following()
        await running.halt()
        assert running.watcher.progress["bitcoin"].full_catch_ups == 1
        assert (_balance(sessions, alice), _balance(sessions, bob)) == (3_000, 11_000)
        with sessions() as session:
            assert verify(session).ok

    _run(sessions, deposits, scenario)


def test_reorg_event_is_checked_with_the_wallet_before_a_credit_is_reversed(
    sessions: sessionmaker[Session], deposits: DepositService, members: tuple[int, int]
) -> None:
    alice = members[0]

    async def scenario(
        fake: FakeChainApi, deposits: DepositService, start: Callable[[], Running]
    ) -> None:
        address = fake.new_address(str(alice))
        deposits.record_address(alice, "bitcoin", address)
        running = start()
        await running.following()
        kept = fake.pay(address, 7_000)
        lost = fake.pay(address, 8_000)
        fake.mine(3)
        await wait_for(lambda: _balance(sessions, alice) == 15_000)
        # a stale/false removal event: the wallet still has the tx in its block
        out = fake.outputs[(kept, 0)]
        fake.publish("tx_removed", {**fake._event_data(out), "reason": "gone",
                                    "back_in_mempool": False})  # fmt: skip
        fake.drop(lost)
        await wait_for(lambda: len(deposits.alerts()) == 1)
        await running.halt()
        (alert,) = deposits.alerts()
        assert alert.deposit.endswith(f"{lost}:0") and alert.amount == 8_000
        assert _balance(sessions, alice) == 7_000
        assert _balance(sessions, alice, SUSPENSE) == 8_000
        assert running.watcher.metrics.reorg_alerts.labels("bitcoin")._value.get() == 1
        assert deposits.get("bitcoin", kept, 0) is not None
        assert deposits.get("bitcoin", kept, 0).state == "credited"  # type: ignore[union-attr]

    _run(sessions, deposits, scenario)


def test_reorg_before_n_is_never_credited(
    sessions: sessionmaker[Session], deposits: DepositService, members: tuple[int, int]
) -> None:
    alice = members[0]

    async def scenario(
        fake: FakeChainApi, deposits: DepositService, start: Callable[[], Running]
    ) -> None:
        address = fake.new_address(str(alice))
        deposits.record_address(alice, "bitcoin", address)
        running = start()
        await running.following()
        txid = fake.pay(address, 3_000)
        fake.mine(1)
        await wait_for(lambda: [d.confirmations for d in deposits.pending(alice)] == [1])
        fake.drop(txid)
        await wait_for(lambda: [d.state for d in deposits.history(alice)] == ["reorged"])
        fake.mine(5)
        await asyncio.sleep(0.2)
        await running.halt()
        assert _balance(sessions, alice) == 0 and deposits.alerts() == []

    _run(sessions, deposits, scenario)
