"""Solvency end to end: the simnet chain stand-in, the real chain API process, the deposit
watcher and the solvency checker (every 0.2 s, two checks in a row to alert) on an SQLite
exchange database.

A member's deposit is credited at N: holdings cover it, no alert over many checks. Then
``sendtoaddress`` from the node wallet behind the exchange's back: the trusted balance drops
below what the member is owed and ONE alert is raised (row, ERROR line, counter) and stays one
while the shortfall lasts. The owner pays the wallet back from outside: the alert clears."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from scnode_exchange.chainclient import ChainApiClient
from scnode_exchange.db import make_engine, make_sessionmaker, upgrade
from scnode_exchange.deposits.service import ChainDepositConfig, DepositService
from scnode_exchange.deposits.watcher import DepositWatcher
from scnode_exchange.ledger import SATS, Ledger
from scnode_exchange.solvency import SolvencyChecker, SolvencyMetrics, SolvencyService
from simnet.pytest_chain import ChainNode
from tests.integration.chain_api.handle import ChainApi

N = 2


@pytest.fixture
def node(start_chain_node: Callable[..., ChainNode]) -> ChainNode:
    node = start_chain_node(coin="bitcoin")
    node.rpc("createwallet", "wallet")
    node.rpc("createwallet", "outside")  # somebody else's wallet, for the address only
    return node


@pytest.fixture
def chain_api(node: ChainNode, tmp_path: Path) -> Iterator[ChainApi]:
    workdir = tmp_path / "chain-api"
    workdir.mkdir()
    api = ChainApi(node, workdir, "btc")
    try:
        yield api.start()
    finally:
        api.stop()


async def _until(what: str, predicate: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {within}s")
        await asyncio.sleep(0.05)


def test_a_wallet_drained_behind_the_exchange_raises_one_alert_until_refilled(
    node: ChainNode, chain_api: ChainApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'exchange.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        ledger = Ledger(session)
        ledger.ensure_assets()
        alice = ledger.create_member("alice").id
    deposits = DepositService(sessions, {"bitcoin": ChainDepositConfig(SATS, N)})
    metrics = SolvencyMetrics()
    solvency = SolvencyService(sessions, {"bitcoin": SATS}, confirm_checks=2, metrics=metrics)

    def owed() -> int:
        with sessions() as session:
            return Ledger(session).member_account(alice, SATS).balance

    def alerts_raised() -> float:
        return (
            metrics.registry.get_sample_value(
                "scnode_exchange_solvency_alerts_total", {"asset": SATS}
            )
            or 0.0
        )

    async def scenario() -> None:
        reader = ChainApiClient(chain_api.url, chain_api.tokens["read"])
        async with ChainApiClient(chain_api.url, chain_api.tokens["deposit"]) as client:
            address = (await client.new_address(alice, fresh=False)).address
        deposits.record_address(alice, "bitcoin", address)
        watcher = DepositWatcher(deposits, {"bitcoin": reader})
        checker = SolvencyChecker(
            solvency, {"bitcoin": ChainApiClient(chain_api.url, chain_api.tokens["read"])},
            interval=0.2,
        )  # fmt: skip
        stop = asyncio.Event()
        tasks = [asyncio.create_task(watcher.run(stop)), asyncio.create_task(checker.run(stop))]
        try:
            await _until("watcher following", watcher.progress["bitcoin"].following.is_set)
            await asyncio.to_thread(node.pay, address, 150_000)
            await asyncio.to_thread(node.mine, N)
            await _until("credited at N", lambda: owed() == 150_000)
            seen, oks = checker.last, _checks(metrics, "ok")
            # five more than so far: paying and mining take seconds on a real node, and the
            # checker counted more than five already by then (make test-real)
            await _until("five more checks", lambda: _checks(metrics, "ok") >= oks + 5)
            assert seen is not None and checker.last is not None and checker.last is not seen
            figures = checker.last.assets[SATS]
            assert figures.wallet == 150_000 and figures.liabilities == 150_000
            assert figures.margin == 0 and alerts_raised() == 0
            assert _checks(metrics, "shortfall") == 0

            # behind the exchange's back: the wallet pays 0.0006 BTC to somebody
            outside = await asyncio.to_thread(node.rpc, "getnewaddress", wallet="outside")
            txid = await asyncio.to_thread(
                node.rpc, "sendtoaddress", outside, 0.0006, wallet="wallet"
            )
            sent = await asyncio.to_thread(node.rpc, "gettransaction", txid, wallet="wallet")
            network_fee = round(-Decimal(str(sent["fee"])) * 100_000_000)
            await _until("alert raised", lambda: solvency.open_alert_assets() == {SATS})
            (alert,) = solvency.alerts()
            assert alert.liabilities == 150_000
            assert alert.shortfall == 60_000 + network_fee > 60_000
            shortfalls = _checks(metrics, "shortfall")
            await _until("more checks", lambda: _checks(metrics, "shortfall") >= shortfalls + 5)
            assert alerts_raised() == 1 and len(solvency.alerts(include_cleared=True)) == 1

            # the owner pays the wallet back from outside (not a member's deposit address)
            refill = await asyncio.to_thread(node.rpc, "getnewaddress", wallet="wallet")
            await asyncio.to_thread(node.pay, refill, 70_000)
            await asyncio.to_thread(node.mine, 1)
            await _until("alert cleared", lambda: solvency.open_alert_assets() == set())
            (cleared,) = solvency.alerts(include_cleared=True)
            assert cleared.cleared_margin is not None and cleared.cleared_margin > 0
            assert owed() == 150_000  # none of it touched the member's account
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await reader.aclose()

    try:
        with caplog.at_level(logging.WARNING, "scnode_exchange.solvency"):
            asyncio.run(scenario())
    finally:
        engine.dispose()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("ALERT solvency of SATS"), errors
    assert any("solvency of SATS restored" in r.getMessage() for r in caplog.records)


def _checks(metrics: SolvencyMetrics, result: str) -> float:
    return (
        metrics.registry.get_sample_value(
            "scnode_exchange_solvency_checks_total", {"asset": SATS, "result": result}
        )
        or 0.0
    )
