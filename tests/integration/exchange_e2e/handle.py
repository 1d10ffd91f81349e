"""Handles of the end-to-end exchange test: a simnet chain stand-in with its chain API process
(one key for the exchange with the read, deposit and send scopes, as the apps role would
issue it) and the exchange app process (``python -m scnode_exchange --env-file``)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

from scnode_core.apikeys import ApiKeyStore, generate
from scnode_exchange.db import make_engine
from simnet.pytest_chain import ChainNode, free_port
from tests.integration.chain_api.handle import ChainApi

EXCHANGE_SCOPES = {"read", "deposit", "send"}


class ExchangeChainApi(ChainApi):
    """The chain API handle plus one key for the exchange (deposit addresses, events, sends:
    the exchange settings carry one key per chain)."""

    def write_config(self) -> Path:
        env_file = super().write_config()
        keys_file = self.workdir / "api-keys.json"
        key = generate(EXCHANGE_SCOPES, name="test-exchange")
        store = ApiKeyStore([*ApiKeyStore.load(keys_file).records, key.record])
        store.save(keys_file)
        self.tokens["exchange"] = key.token
        return env_file


@dataclass
class Chain:
    """A regtest stand-in (its simulated outside world funded, the node wallet ``wallet``
    and a receiving wallet ``outside`` for withdrawals) and its chain API."""

    coin: str
    root: Path
    node: ChainNode = field(init=False)
    api: ExchangeChainApi | None = None

    def start(self) -> Chain:
        (self.root / "node").mkdir(parents=True)
        (self.root / "api").mkdir()
        self.node = ChainNode(self.root / "node", self.coin, "regtest", None, {}, [])
        self.node.start()
        self.node.rpc("createwallet", "wallet")
        self.node.rpc("createwallet", "outside")
        self.node.mine(101)  # mature coins for the simulated outside world (pays deposits)
        api = ExchangeChainApi(self.node, self.root / "api", self.coin[:3])
        api.start()
        self.api = api
        return self

    def stop(self) -> None:
        if self.api is not None and self.api.proc is not None and self.api.proc.poll() is None:
            # the exchange's event WebSocket may still be open; nothing of the API is checked
            self.api.kill9()
        node: ChainNode | None = getattr(self, "node", None)  # None if start failed early
        if node is not None:
            node.stop()
            node.kill()

    @property
    def settings(self) -> dict[str, str]:
        assert self.api is not None
        return {"api_url": self.api.url, "api_key": self.api.tokens["exchange"]}

    def wallet_balance(self) -> int:
        """What the node wallet holds, confirmed or not, in base units."""
        mine: dict[str, float] = self.node.rpc("getbalances", wallet="wallet")["mine"]
        return round((mine["trusted"] + mine["untrusted_pending"]) * 100_000_000)

    def wallet_sends(self) -> list[dict[str, Any]]:
        """Every send the node wallet made (one entry per transaction)."""
        txs = self.node.rpc("listtransactions", "*", 1000, wallet="wallet")
        seen: dict[str, dict[str, Any]] = {}
        for tx in txs:
            if tx.get("category") == "send":
                seen.setdefault(tx["txid"], tx)
        return list(seen.values())


class ExchangeProcess:
    """The exchange app as the operator starts it (env file, owner key file, session secret
    in ``workdir``)."""

    def __init__(self, workdir: Path, database_url: str, settings: dict[str, Any]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.log = workdir / "exchange.log"
        owner = generate({"owner"}, "operator")
        ApiKeyStore([owner.record]).save(workdir / "owner-keys.json")
        self.owner_key = owner.token
        (workdir / "session.secret").write_text(secrets.token_urlsafe(48))
        env = {
            "DATABASE_URL": database_url,
            "SESSION_SECRET_FILE": str(workdir / "session.secret"),
            "OWNER_API_KEYS_FILE": str(workdir / "owner-keys.json"),
            "LAB_MODE": "true",
            "ENVIRONMENT": "test",
            "COOKIE_SECURE": "false",
            # follow broadcast withdrawals every second, not every 10 s: the test waits on it
            "WITHDRAWAL_FOLLOW_SECONDS": "1",
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in settings.items()},
        }
        self.env_file = workdir / "exchange.env"
        self.env_file.write_text("".join(f"SCNODE_EXCHANGE_{k}='{v}'\n" for k, v in env.items()))
        self.env_file.chmod(0o600)
        self.proc: subprocess.Popen[bytes] | None = None
        self.other_logs: list[Path] = []  # shown too when a wait fails (chain API logs)

    def start(self) -> ExchangeProcess:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scnode_exchange", "--env-file", str(self.env_file),
                 "--port", str(self.port), "--log-level", "info"],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        # a cold start imports the whole app (8 s of wall time alone at a load of 16 on the
        # 2-core machine) and migrates the database; with real daemons beside it, 30 s was
        # seen to pass with nothing logged yet (make test-real)
        self.wait_for("the exchange answering /healthz", self._healthy, timeout=60)
        return self

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def log_tail(self) -> str:
        """The end of the exchange's log without uvicorn's access lines."""
        if not self.log.exists():
            return ""
        lines = self.log.read_text(errors="replace").splitlines()
        kept = [line for line in lines if not ('- "' in line and " HTTP/1.1" in line)]
        return "\n".join(kept)[-6000:]

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
        """Poll ``check`` until true; fail with the exchange's log if it does not come, or
        at once if the process died."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"exchange exited ({self.proc.returncode}) waiting for {what}:\n"
                    + self.log_tail()
                )
            if check():
                return
            if time.monotonic() > deadline:
                others = "".join(
                    f"\n--- {p}:\n{p.read_text(errors='replace')[-2000:]}"
                    for p in self.other_logs
                    if p.exists()
                )
                raise AssertionError(
                    f"{what}: not reached in {timeout}s\n--- exchange log:\n{self.log_tail()}"
                    + others
                )
            time.sleep(0.1)

    def stop(self) -> int | None:
        """SIGTERM and wait; SIGKILL if it hangs. The exit status (None if not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A throwaway database on the test PostgreSQL server (dropped afterwards)."""
    admin = make_engine(server_url, isolation_level="AUTOCOMMIT")
    name = "scnode_e2e_" + secrets.token_hex(6)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
