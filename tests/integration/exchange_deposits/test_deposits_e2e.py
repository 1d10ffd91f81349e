"""Deposits end to end: the simnet chain stand-in, the real chain API process and the deposit
watcher as its own process (``python -m scnode_exchange.deposits``), on an SQLite exchange DB.

Two members get addresses, payments arrive and show as pending, are credited after N = 3
blocks, the watcher is SIGKILLed and restarted (nothing missed, nothing credited twice), and
a reorg that drops a credited payment lands it in suspense with an owner alert; a reorg before
N credits nothing. The same tests run against a real bitcoind (make test-real)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.chainclient import ChainApiClient
from scnode_exchange.db import make_engine, make_sessionmaker, upgrade
from scnode_exchange.deposits.service import ChainDepositConfig, DepositService
from scnode_exchange.ledger import NODE_WALLET, SATS, SUSPENSE, JournalEntry, Ledger, verify
from simnet.pytest_chain import ChainNode
from tests.integration.chain_api.handle import ChainApi

N = 3
# a wait that includes starting the watcher process (its imports alone took 8 s of wall time
# at a load of 16 on the 2-core machine; make test-real saw 20 s pass on a restart)
START_WAIT = 60.0


class WatcherProcess:
    def __init__(self, env_file: Path, log: Path) -> None:
        self.env_file = env_file
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scnode_exchange.deposits", "--env-file",
                 str(self.env_file), "--log-level", "info"],
                stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(10) == -signal.SIGKILL

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def node(start_chain_node: Callable[..., ChainNode]) -> ChainNode:
    node = start_chain_node(coin="bitcoin")
    node.rpc("createwallet", "wallet")
    return node


@pytest.fixture
def chain_api(node: ChainNode, tmp_path: Path) -> Iterator[ChainApi]:
    workdir = tmp_path / "chain-api"
    workdir.mkdir()
    api = ChainApi(node, workdir, "btc")
    try:
        yield api.start()
    finally:
        # a SIGKILLed watcher leaves a WebSocket the API only notices on its next send, and
        # uvicorn's graceful shutdown would wait for it: nothing of the API is checked after
        if api.proc is not None and api.proc.poll() is None:
            api.kill9()


def _wait(what: str, predicate: Callable[[], bool], log: Path, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise AssertionError(f"{what}: not reached in {within}s\nwatcher log:\n{text}")
        time.sleep(0.1)


def test_two_members_deposit_watcher_killed_and_reorg_after_credit(
    node: ChainNode, chain_api: ChainApi, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'exchange.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    sessions: sessionmaker[Session] = make_sessionmaker(engine)
    with sessions.begin() as session:
        ledger = Ledger(session)
        ledger.ensure_assets()
        alice, bob = ledger.create_member("alice").id, ledger.create_member("bob").id
    deposits = DepositService(sessions, {"bitcoin": ChainDepositConfig(SATS, N)})

    async def addresses() -> tuple[str, str]:
        async with ChainApiClient(chain_api.url, chain_api.tokens["deposit"]) as client:
            a = (await client.new_address(alice, fresh=False)).address
            b = (await client.new_address(bob, fresh=False)).address
            assert (await client.new_address(alice, fresh=False)).address == a
        return a, b

    a_addr, b_addr = asyncio.run(addresses())
    deposits.record_address(alice, "bitcoin", a_addr)
    deposits.record_address(bob, "bitcoin", b_addr)

    env_file = tmp_path / "exchange.env"
    chains = {"bitcoin": {"api_url": chain_api.url, "api_key": chain_api.tokens["read"],
                          "confirmations": N}}  # fmt: skip
    env_file.write_text(
        f"SCNODE_EXCHANGE_DATABASE_URL={url}\nSCNODE_EXCHANGE_CHAINS={json.dumps(chains)}\n"
    )
    log = tmp_path / "watcher.log"
    watcher = WatcherProcess(env_file, log)

    def balance(member_id: int | None, name: str = "") -> int:
        with sessions() as session:
            ledger = Ledger(session)
            account = (
                ledger.member_account(member_id, SATS)
                if member_id is not None
                else ledger.system_account(name, SATS)
            )
            return account.balance

    try:
        watcher.start()
        _wait(
            "watcher following", lambda: deposits.cursor("bitcoin")[0] is not None, log, START_WAIT
        )
        tx_a = node.pay(a_addr, 100_000)
        node.pay(b_addr, 50_000)
        _wait(
            "both pending",
            lambda: len(deposits.pending(alice)) == 1 and len(deposits.pending(bob)) == 1,
            log,
        )
        node.mine(N - 1)
        _wait("N-1 confirmations", lambda: deposits.pending(alice)[0].confirmations == N - 1, log)
        assert balance(alice) == balance(bob) == 0
        node.mine(1)
        _wait("credited at N", lambda: balance(alice) == 100_000 and balance(bob) == 50_000, log)
        assert deposits.get("bitcoin", tx_a, _vout(deposits, alice, tx_a)) is not None

        # SIGKILL: what happens meanwhile is found on restart, and nothing is credited twice
        watcher.kill9()
        tx_late = node.pay(a_addr, 30_000)
        node.mine(N)
        watcher.start()
        _wait("late deposit credited", lambda: balance(alice) == 130_000, log, START_WAIT)
        watcher.kill9()
        watcher.start()
        _wait("follows again", lambda: _log_count(log, "following events") >= 3, log, START_WAIT)
        time.sleep(0.5)
        assert (balance(alice), balance(bob)) == (130_000, 50_000)
        with sessions() as session:
            credits = session.scalar(
                select(func.count(JournalEntry.id)).where(JournalEntry.kind == "deposit")
            )
        assert credits == 3

        # a reorg drops the late payment after it was credited: suspense + alert, alice >= 0
        node.reorg(N, drop_txs=True)
        _wait("alert raised", lambda: len(deposits.alerts()) == 1, log)
        (alert,) = deposits.alerts()
        assert alert.deposit == f"bitcoin:{tx_late}:{_vout(deposits, alice, tx_late)}"
        assert (alert.amount, alert.taken_from_member, alert.receivable) == (30_000, 30_000, 0)
        assert balance(alice) == 100_000 and balance(None, SUSPENSE) == 30_000
        assert balance(None, NODE_WALLET) == -180_000
        assert "reorged after credit" in log.read_text()
        with sessions() as session:
            assert verify(session).ok
        assert watcher.stop() == 0
    finally:
        watcher.stop()
        engine.dispose()


def _vout(deposits: DepositService, member_id: int, txid: str) -> int:
    return next(d.vout for d in deposits.history(member_id, limit=100) if d.txid == txid)


def _log_count(log: Path, needle: str) -> int:
    return log.read_text(errors="replace").count(needle) if log.exists() else 0


def test_a_reorg_before_n_confirmations_credits_nothing(
    node: ChainNode, chain_api: ChainApi, tmp_path: Path
) -> None:
    """A deposit two blocks deep is reorged out and double-spent in the new branch: it was
    never credited, is marked as having left the chain, and stays uncredited as blocks pile up."""
    url = f"sqlite:///{tmp_path / 'exchange.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    sessions: sessionmaker[Session] = make_sessionmaker(engine)
    with sessions.begin() as session:
        ledger = Ledger(session)
        ledger.ensure_assets()
        carol = ledger.create_member("carol").id
    deposits = DepositService(sessions, {"bitcoin": ChainDepositConfig(SATS, N)})

    async def address() -> str:
        async with ChainApiClient(chain_api.url, chain_api.tokens["deposit"]) as client:
            return (await client.new_address(carol, fresh=False)).address

    c_addr = asyncio.run(address())
    deposits.record_address(carol, "bitcoin", c_addr)
    env_file = tmp_path / "exchange.env"
    chains = {"bitcoin": {"api_url": chain_api.url, "api_key": chain_api.tokens["read"],
                          "confirmations": N}}  # fmt: skip
    env_file.write_text(
        f"SCNODE_EXCHANGE_DATABASE_URL={url}\nSCNODE_EXCHANGE_CHAINS={json.dumps(chains)}\n"
    )
    log = tmp_path / "watcher.log"
    watcher = WatcherProcess(env_file, log)

    def credited() -> int:
        with sessions() as session:
            return Ledger(session).member_account(carol, SATS).balance

    try:
        watcher.start()
        _wait(
            "watcher following", lambda: deposits.cursor("bitcoin")[0] is not None, log, START_WAIT
        )
        txid = node.pay(c_addr, 70_000)
        node.mine(N - 1)
        _wait(
            "N-1 confirmations",
            lambda: [d.confirmations for d in deposits.pending(carol)] == [N - 1],
            log,
        )
        assert credited() == 0

        # the two blocks are replaced by three without the payment, whose coins the payer
        # then spends elsewhere in a block of the new branch
        node.reorg(N - 1, drop_txs=True)
        node.control("double_spend", txid=txid, mine=True)
        vout = _vout(deposits, carol, txid)
        _wait(
            "deposit left the chain",
            lambda: (
                (view := deposits.get("bitcoin", txid, vout)) is not None
                and view.state == "reorged"
            ),
            log,
        )
        node.mine(N + 1)
        _wait("watcher at the new tip", lambda: _log_count(log, "left the chain before") >= 1, log)
        time.sleep(1.0)  # the blocks above went through the watcher: nothing may follow
        view = deposits.get("bitcoin", txid, vout)
        assert view is not None and (view.state, view.credited_at) == ("reorged", None)
        assert credited() == 0 and deposits.pending(carol) == []
        with sessions() as session:
            kinds = session.scalars(select(JournalEntry.kind)).all()
            assert "deposit" not in kinds
            assert verify(session).ok
        assert watcher.stop() == 0
    finally:
        watcher.stop()
        engine.dispose()
