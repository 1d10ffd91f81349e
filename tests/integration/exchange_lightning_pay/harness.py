"""Handles of the Lightning payment tests: the Lightning API with the exchange's key, the
exchange process with its members, and what the tests read of the stand-in."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from scnode_core.apikeys import ApiKeyStore, generate
from simnet.pytest_lightning import LightningNodeHandle
from tests.integration.exchange_e2e.handle import ExchangeProcess
from tests.integration.lightning_api.handle import LightningApi

# on the hub's side of the 5,000,000 sat channel, so the outside world can pay the node too
INBOUND_MSAT = 2_000_000_000
EXCHANGE_SCOPES = {"read", "invoice", "pay"}


class ExchangeLightningApi(LightningApi):
    """The Lightning API handle plus the exchange's key (read, invoice, pay)."""

    def write_config(self) -> Path:
        env_file = super().write_config()
        keys_file = self.workdir / "api-keys.json"
        key = generate(EXCHANGE_SCOPES, name="test-exchange")
        ApiKeyStore([*ApiKeyStore.load(keys_file).records, key.record]).save(keys_file)
        self.tokens["exchange"] = key.token
        return env_file


class PayExchangeProcess(ExchangeProcess):
    """The exchange process, given up to two minutes to start: a restart after a kill -9 on
    a loaded CI machine (Alembic check, recovery pass) can take longer than the usual 30 s."""

    def start(self) -> PayExchangeProcess:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scnode_exchange", "--env-file", str(self.env_file),
                 "--port", str(self.port), "--log-level", "info"],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        self.wait_for("the exchange answering /healthz", self._healthy, timeout=120)
        return self


@dataclass
class Exchange:
    """The exchange process and its members (bearer headers by handle)."""

    process: ExchangeProcess
    api: LightningApi
    members: dict[str, int] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.process.url

    def client(self, handle: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers[handle], timeout=30)

    def owner(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"X-API-Key": self.process.owner_key}, timeout=30
        )

    def add_member(self, handle: str, sats: int) -> int:
        with self.owner() as owner:
            made = owner.post("/api/owner/members", json={"handle": handle, "reason": "test"})
            assert made.status_code == 201, made.text
            member_id = int(made.json()["id"])
            if sats:
                funded = owner.post(
                    f"/api/owner/members/{member_id}/adjustments",
                    json={
                        "asset": "SATS",
                        "amount": sats,
                        "reason": "test funding",
                        "idempotency_key": secrets.token_hex(8),
                    },
                )
                assert funded.status_code == 201, funded.text
        self.members[handle] = member_id
        self.login(handle)
        return member_id

    def login(self, handle: str) -> None:
        reply = httpx.post(f"{self.url}/api/auth/login", json={"username": handle}, timeout=10)
        assert reply.status_code == 200, reply.text
        self.headers[handle] = {"Authorization": f"Bearer {reply.json()['token']}"}

    def sats(self, handle: str) -> dict[str, int]:
        """The member's SATS row of /api/balances (balance, available, reserved…)."""
        with self.client(handle) as client:
            rows = client.get("/api/balances").json()
        found: dict[str, int] = next(r for r in rows if r["asset"] == "SATS")
        return found

    def payment(self, handle: str, payment_id: int) -> dict[str, Any]:
        with self.client(handle) as client:
            reply = client.get(f"/v1/lightning/payments/{payment_id}")
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def wait_outcome(self, handle: str, payment_id: int, timeout: float = 30) -> dict[str, Any]:
        """The payment once it is complete or failed."""
        found: dict[str, Any] = {}

        def done() -> bool:
            found.update(self.payment(handle, payment_id))
            return found["state"] in ("complete", "failed")

        self.process.wait_for(f"payment {payment_id} decided", done, timeout)
        return found


def exchange_settings(api: LightningApi, **lightning: Any) -> dict[str, Any]:
    return {
        "LIGHTNING": {
            "api_url": api.url,
            "api_key": api.tokens["exchange"],
            "pay_poll_seconds": 0.5,
            # exchanges of several tests share one Lightning API: keys of their own
            "pay_key_prefix": "lnpay" + secrets.token_hex(3),
            **lightning,
        }
    }


def completed_parts(node: LightningNodeHandle, payment_hash: str) -> list[dict[str, Any]]:
    parts = node.rpc.listsendpays(payment_hash=payment_hash)["payments"]
    return [p for p in parts if p["status"] == "complete"]


def channel_local_msat(node: LightningNodeHandle) -> int:
    return int(node.rpc.listpeerchannels()["channels"][0]["to_us_msat"])


def hub_fee(amount_msat: int) -> int:
    """lightningd's default forwarding fee, charged by the hub: 1 msat + 10 ppm."""
    return 1 + amount_msat * 10 // 1_000_000
