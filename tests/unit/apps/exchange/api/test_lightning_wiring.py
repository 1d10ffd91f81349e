"""Lightning deposits inside the exchange app: mounted with the app's member auth, answered
503 "not configured" on a node without Lightning, and started from settings.lightning."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from scnode_exchange.api.app import create_app
from scnode_exchange.lightning import LightningDeposits
from tests.unit.apps.exchange.api.node import Node, make_settings

INVOICE = {"amount_sats": 1_000, "idempotency_key": "deposit-0001"}


def test_without_lightning_the_routes_say_so(sqlite_url: str, tmp_path: Path) -> None:
    settings, key = make_settings(tmp_path, sqlite_url)
    with TestClient(create_app(settings)) as client:
        node = Node(client, key, settings)
        _, member = node.member("alice")
        assert client.post("/v1/lightning/invoices", json=INVOICE).status_code == 401
        reply = client.post("/v1/lightning/invoices", json=INVOICE, headers=member)
        assert reply.status_code == 503
        assert reply.json()["detail"] == "Lightning deposits are not configured on this node"


def test_configured_lightning_runs_and_reports_its_api_down(
    sqlite_url: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "lightning-api.key"
    key_file.write_text("scnk_00000000_" + "b" * 43 + "\n")
    lightning = {"api_url": "http://127.0.0.1:9", "api_key_file": str(key_file)}
    settings, key = make_settings(tmp_path, sqlite_url, lightning=lightning)
    assert settings.lightning is not None
    assert settings.lightning.api_key.get_secret_value().endswith("b" * 43)
    with TestClient(create_app(settings)) as client:
        assert isinstance(client.app.state.lightning, LightningDeposits)  # type: ignore[attr-defined]
        node = Node(client, key, settings)
        _, member = node.member("bob")
        reply = client.post("/v1/lightning/invoices", json=INVOICE, headers=member)
        assert reply.status_code == 503
        assert reply.json()["detail"] == "the Lightning node is unavailable"
        assert reply.headers["retry-after"] == "10"
        listed = client.get("/v1/lightning/invoices", headers=member)
        assert listed.status_code == 200 and listed.json() == {"invoices": []}
        # the channel is a SATS holding: unreadable here, so SATS solvency is unknown, not ok
        solvency = client.get("/api/owner/solvency", headers=node.owner).json()
        sats = next(a for a in solvency["assets"] if a["asset"] == "SATS")
        assert sats["chains"] == ["lightning"]
        assert sats["status"] == "unknown" and sats["error"].startswith("lightning:")


def test_the_deposit_watchers_series_are_on_the_apps_metrics(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Prometheus scrapes /metrics: the on-chain and Lightning deposit watchers' series are
    there (they were on registries of their own that nothing served), once per app."""
    key_file = tmp_path / "api.key"
    key_file.write_text("scnk_00000000_" + "c" * 43 + "\n")
    chains = {
        "bitcoin": {"asset": "SATS", "api_url": "http://127.0.0.1:9", "api_key_file": str(key_file)}
    }
    lightning = {"api_url": "http://127.0.0.1:9", "api_key_file": str(key_file)}
    settings, key = make_settings(tmp_path, sqlite_url, chains=chains, lightning=lightning)
    app = create_app(settings)
    for _ in range(2):  # a second lifespan of the same app registers nothing twice
        with TestClient(app) as client:
            text = client.get("/metrics", headers={"X-API-Key": key}).text
            for series in (
                "scnode_exchange_deposits_credited",
                "scnode_exchange_deposit_cursor",
                "scnode_exchange_lightning_deposits_total",
                "scnode_exchange_lightning_deposit_sats_total",
            ):
                assert series in text, series
