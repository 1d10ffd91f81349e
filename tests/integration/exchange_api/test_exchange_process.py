"""The exchange as a process, as an operator starts it (``python -m scnode_exchange
--env-file``): owner sets up members, members log in (lab), trade, watch the trade stream; a
restart rebuilds the book; bad settings stop it with the setting named."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from scnode_core.apikeys import ApiKeyStore, generate
from simnet.pytest_chain import free_port

LOT = 1_000_000


def _env(tmp_path: Path, **extra: str) -> Path:
    secret = tmp_path / "session.secret"
    secret.write_text(secrets.token_urlsafe(48))
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'exchange.sqlite3'}",
        "MARKETS": json.dumps(
            [
                {
                    "symbol": "AZC/SATS",
                    "base": "AZC",
                    "quote": "SATS",
                    "lot_size": LOT,
                    "tick": 10,
                    "taker_fee_bps": 20,
                }
            ]
        ),
        "SESSION_SECRET_FILE": str(secret),
        "OWNER_API_KEYS_FILE": str(tmp_path / "owner-keys.json"),
        "LAB_MODE": "true",
        "ENVIRONMENT": "development",
        "COOKIE_SECURE": "false",
        **extra,
    }
    path = tmp_path / "exchange.env"
    path.write_text("".join(f"SCNODE_EXCHANGE_{k}='{v}'\n" for k, v in env.items()))
    return path


class Exchange:
    def __init__(self, env_file: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env_file, self.log = env_file, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "scnode_exchange",
                    "--env-file",
                    str(self.env_file),
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"exchange did not come up: {self.log.read_text()}")

    def stop(self) -> None:
        """SIGTERM: a clean shutdown (uvicorn re-raises the signal after the lifespan ended,
        so the status is -SIGTERM) without a traceback in the log."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=20) in (0, -signal.SIGTERM)
        assert "Traceback" not in self.log.read_text()


@pytest.fixture
def exchange(tmp_path: Path) -> Iterator[tuple[Exchange, str]]:
    key = generate({"owner"}, "operator")
    ApiKeyStore([key.record]).save(tmp_path / "owner-keys.json")
    proc = Exchange(_env(tmp_path), tmp_path / "exchange.log")
    proc.start()
    try:
        yield proc, key.token
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()


def test_members_trade_and_the_book_survives_a_restart(exchange: tuple[Exchange, str]) -> None:
    proc, owner_key = exchange
    owner = httpx.Client(base_url=proc.url, headers={"X-API-Key": owner_key}, timeout=10)
    members = {}
    for handle, asset, amount in (("alice", "AZC", 10 * LOT), ("bob", "SATS", 100_000)):
        created = owner.post("/api/owner/members", json={"handle": handle, "reason": "demo"})
        assert created.status_code == 201, created.text
        funded = owner.post(
            f"/api/owner/members/{created.json()['id']}/adjustments",
            json={
                "asset": asset,
                "amount": amount,
                "reason": "demo funds",
                "idempotency_key": f"demo-{handle}",
            },
        )
        assert funded.status_code == 201, funded.text
        token = httpx.post(f"{proc.url}/api/auth/login", json={"username": handle}).json()["token"]
        members[handle] = httpx.Client(
            base_url=proc.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
    alice, bob = members["alice"], members["bob"]
    ws_url = proc.url.replace("http", "ws") + "/ws/trades"
    with connect(ws_url, open_timeout=10) as ws:
        snapshot = json.loads(ws.recv(timeout=10))
        assert snapshot["type"] == "snapshot" and snapshot["trades"] == []
        assert (
            alice.post(
                "/api/orders", json={"side": "sell", "price": 1000, "quantity": 4}
            ).status_code
            == 201
        )
        bought = bob.post("/api/orders", json={"side": "buy", "price": 1000, "quantity": 3})
        assert bought.json()["status"] == "filled"
        update = json.loads(ws.recv(timeout=10))
        assert [(t["price"], t["quantity"]) for t in update["trades"]] == [(1000, 3)]
        assert update["seq"] > snapshot["seq"]
    assert bob.get("/api/wallet").json()["sats"] == 97_000
    assert [h["kind"] for h in alice.get("/api/history").json()["items"]] == [
        "trade",
        "trade",
        "owner_adjustment",
    ]
    book_before = httpx.get(f"{proc.url}/api/orders").json()
    assert book_before["asks"] == [[1000, 1]]

    proc.stop()
    proc.start()
    assert httpx.get(f"{proc.url}/api/orders").json() == book_before
    # the rebuilt book still matches against the remaining ask
    assert (
        bob.post("/api/orders", json={"side": "buy", "price": 1000, "quantity": 1}).json()["status"]
        == "filled"
    )
    proc.stop()


def test_bad_settings_name_the_setting(tmp_path: Path) -> None:
    env = _env(tmp_path, ENVIRONMENT="production")  # lab_mode in production is refused
    done = subprocess.run(
        [sys.executable, "-m", "scnode_exchange", "--env-file", str(env)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "lab_mode" in done.stderr
