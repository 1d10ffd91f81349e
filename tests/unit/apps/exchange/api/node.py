"""Helpers of the exchange API tests: an app with an owner key, members funded through the
owner API."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from scnode_core.apikeys import ApiKeyStore, generate
from scnode_exchange.settings import ExchangeSettings, MarketSettings

LOT = 1_000_000  # 0.01 AZC
MARKET = MarketSettings(
    symbol="AZC/SATS",
    base="AZC",
    quote="SATS",
    lot_size=LOT,
    tick=10,
    maker_fee_bps=10,
    taker_fee_bps=20,
)


@dataclass
class Node:
    """The running app and what a test needs to act as the owner or a member."""

    client: TestClient
    owner_key: str
    settings: ExchangeSettings

    @property
    def owner(self) -> dict[str, str]:
        return {"X-API-Key": self.owner_key}

    def member(self, handle: str, **funds: int) -> tuple[int, dict[str, str]]:
        """A new member funded by owner adjustments; its id and bearer headers."""
        reply = self.client.post(
            "/api/owner/members",
            json={"handle": handle, "reason": "test member"},
            headers=self.owner,
        )
        assert reply.status_code == 201, reply.text
        member_id = int(reply.json()["id"])
        for asset, amount in funds.items():
            self.adjust(member_id, asset.upper(), amount)
        token = self.client.app.state.session_tokens.issue(member_id)  # type: ignore[attr-defined]
        return member_id, {"Authorization": f"Bearer {token}"}

    def adjust(self, member_id: int, asset: str, amount: int) -> dict[str, Any]:
        reply = self.client.post(
            f"/api/owner/members/{member_id}/adjustments",
            json={
                "asset": asset,
                "amount": amount,
                "reason": "test funding",
                "idempotency_key": secrets.token_hex(8),
            },
            headers=self.owner,
        )
        assert reply.status_code == 201, reply.text
        result: dict[str, Any] = reply.json()
        return result

    def balance(self, headers: dict[str, str], asset: str) -> dict[str, int]:
        rows = self.client.get("/api/balances", headers=headers).json()
        found: dict[str, int] = next(r for r in rows if r["asset"] == asset)
        return found


def make_settings(tmp_path: Path, db_url: str, **overrides: Any) -> tuple[ExchangeSettings, str]:
    secret = tmp_path / "session.secret"
    secret.write_text(secrets.token_urlsafe(48))
    key = generate({"owner"}, "test-owner")
    keys_file = tmp_path / "owner-keys.json"
    ApiKeyStore([key.record]).save(keys_file)
    values: dict[str, Any] = {
        "database_url": db_url,
        "markets": [MARKET],
        "session_secret_file": secret,
        "owner_api_keys_file": keys_file,
        "environment": "test",
        "lab_mode": True,
        "cookie_secure": False,
        "market_stats_interval_seconds": 0.2,
    }
    values.update(overrides)
    return ExchangeSettings(**values), key.token
