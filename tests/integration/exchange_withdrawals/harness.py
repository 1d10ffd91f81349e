"""A withdrawal worker process (``python -m scnode_exchange.withdrawals``) against a real
chain API process and the simnet chain stand-in, plus the checks the fault tests share."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.db import make_engine, make_sessionmaker, upgrade
from scnode_exchange.ledger import NODE_WALLET, SATS, Hold, Ledger, verify
from scnode_exchange.withdrawals.models import Withdrawal
from scnode_exchange.withdrawals.service import WithdrawalService, hold_reference
from scnode_exchange.withdrawals.settings import build_policies
from simnet.pytest_chain import ChainNode
from tests.integration.chain_api.handle import ChainApi

POLICY = {"hrp": "bcrt", "min_amount": 1_000, "flat_fee": 300, "confirmations": 1}


@dataclass
class Exchange:
    """One exchange database with its own send-key prefix (the chain stand-in and chain API
    are shared by the module's tests; the prefix keeps their keys apart)."""

    workdir: Path
    api: ChainApi
    node: ChainNode
    url: str
    prefix: str = field(default_factory=lambda: "t" + secrets.token_hex(4))
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0  # worker processes started (each logs "withdrawal worker started" once up)

    def __post_init__(self) -> None:
        upgrade(self.url)
        self.engine = make_engine(self.url)
        self.sessions: sessionmaker[Session] = make_sessionmaker(self.engine)
        with self.sessions.begin() as session:
            Ledger(session).ensure_assets()
        policies = build_policies({"bitcoin": SATS}, {"bitcoin": POLICY}, 10**12)
        self.service = WithdrawalService(self.sessions, policies, send_key_prefix=self.prefix)

    def close(self) -> None:
        self.stop_worker()
        self.engine.dispose()

    # -- money -------------------------------------------------------------------------------
    def member(self, handle: str, sats: int) -> int:
        with self.sessions.begin() as session:
            ledger = Ledger(session)
            member = ledger.create_member(handle)
            ledger.transfer(
                "deposit",
                "test deposit",
                ledger.system_account(NODE_WALLET, SATS),
                ledger.member_account(member.id, SATS),
                sats,
            )
            return member.id

    def address(self) -> str:
        return str(self.node.rpc("getnewaddress", wallet="wallet"))

    # -- the worker process ------------------------------------------------------------------
    def chain_settings(self) -> dict[str, str]:
        return {"asset": SATS, "api_url": self.api.url, "api_key": self.api.tokens["send"]}

    def start_worker(self, crash_at: str | None = None) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "SCNODE_EXCHANGE_DATABASE_URL": self.url,
            "SCNODE_EXCHANGE_CHAINS": json.dumps({"bitcoin": self.chain_settings()}),
            "SCNODE_EXCHANGE_WITHDRAWALS": json.dumps({"bitcoin": POLICY}),
            "SCNODE_EXCHANGE_WITHDRAWAL_APPROVAL_THRESHOLD": str(10**12),
            "SCNODE_EXCHANGE_WITHDRAWAL_POLL_SECONDS": "0.1",
            "SCNODE_EXCHANGE_WITHDRAWAL_BATCH": "8",
            "SCNODE_EXCHANGE_WITHDRAWAL_FOLLOW_SECONDS": "0.2",
            "SCNODE_EXCHANGE_WITHDRAWAL_KEY_PREFIX": self.prefix,
        }
        env.pop("SCNODE_EXCHANGE_CRASH_AT", None)
        if crash_at:
            env["SCNODE_EXCHANGE_CRASH_AT"] = crash_at
        log = open(self.workdir / "worker.log", "ab")  # noqa: SIM115 - handed to the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scnode_exchange.withdrawals", "--log-level", "info"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        self.starts += 1
        return self.proc

    def worker_log(self) -> str:
        path = self.workdir / "worker.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(10) == -signal.SIGKILL

    def stop_worker(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        # a SIGTERM before the worker is up (its handler installed) ends it with -15 rather
        # than a clean stop: on a quiet machine the work can be done before that
        deadline = time.monotonic() + 30
        while (
            self.worker_log().count("withdrawal worker started") < self.starts
            and self.proc.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        self.proc.terminate()
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited ({self.proc.returncode}) waiting for {what}:\n"
                    + self.worker_log()[-3000:]
                )
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.worker_log()[-3000:]}")

    def states(self) -> dict[int, str]:
        with self.sessions() as session:
            return {w.id: w.state for w in session.scalars(select(Withdrawal))}

    # -- checks ------------------------------------------------------------------------------
    def wallet_sends(self) -> dict[str, set[str]]:
        """txids the node wallet sent per idempotency key of this exchange."""
        sends: dict[str, set[str]] = {}
        mark = f"scnode-send:{self.prefix}-"
        for tx in self.node.rpc("listtransactions", "*", 5000, wallet="wallet"):
            comment = tx.get("comment") or ""
            if tx.get("category") == "send" and comment.startswith(mark):
                sends.setdefault(comment.removeprefix("scnode-send:"), set()).add(tx["txid"])
        return sends

    def assert_consistent(self) -> None:
        """Every withdrawal paid at most once; sent ones paid exactly once with the recorded
        txid and their hold settled; refunded ones never paid and their hold released; the
        ledger audit clean."""
        sends = self.wallet_sends()
        with self.sessions() as session:
            report = verify(session)
            assert report.ok, report
            rows = list(session.scalars(select(Withdrawal)))
            for w in rows:
                key = f"{self.prefix}-{w.id:06d}"
                hold = session.scalar(select(Hold).where(Hold.reference == hold_reference(w.id)))
                assert hold is not None and not hold.is_open and hold.remaining == 0, w.id
                if w.state in ("broadcast", "confirmed"):
                    assert sends.get(key) == {w.txid}, (w.id, sends.get(key), w.txid)
                    assert w.send_key == key
                else:
                    assert w.state in ("failed", "cancelled", "rejected"), (w.id, w.state)
                    assert key not in sends, (w.id, sends[key])
            assert set(sends) <= {f"{self.prefix}-{w.id:06d}" for w in rows}
