"""``GET /api/owner/solvency`` and the metrics in the real app (SQLite: wiring only; the
figures are tested on both databases in test_solvency.py): owner key required, fresh figures
per asset, the alert state of the periodic check, ``scnode_exchange_solvency_margin`` on
``/metrics``; and the periodic task runs from the lifespan with its interval setting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from scnode_exchange.api.app import create_app
from scnode_exchange.chainclient import ChainApiRetryableError
from scnode_exchange.ledger import SATS
from scnode_exchange.solvency import SolvencyChecker, SolvencyService
from tests.unit.apps.exchange.api.node import Node, make_settings


class FakeWallet:
    def __init__(self, trusted: int) -> None:
        self.trusted = trusted
        self.down = False
        self.closed = False

    async def balance(self) -> dict[str, int]:
        if self.down:
            raise ChainApiRetryableError("GET /v1/wallet/balance: cannot reach")
        return {"trusted_sats": self.trusted, "untrusted_pending_sats": 7, "immature_sats": 9}

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def app_node(tmp_path: Path) -> Iterator[Node]:
    settings, owner_key = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'exchange.sqlite3'}", solvency_interval_seconds=0
    )
    with TestClient(create_app(settings)) as client:
        yield Node(client, owner_key, settings)


def _checker(node: Node, wallet: FakeWallet, interval: float = 0) -> SolvencyChecker:
    state: Any = node.client.app.state  # type: ignore[attr-defined]
    service = SolvencyService(
        state.sessions, {"bitcoin": SATS}, confirm_checks=1, metrics=state.solvency_metrics
    )
    checker = SolvencyChecker(service, {"bitcoin": wallet}, interval=interval)
    state.solvency = checker
    return checker


def test_owner_sees_the_figures_and_the_alert(app_node: Node) -> None:
    client = app_node.client
    assert client.get("/api/owner/solvency").status_code == 401
    empty = client.get("/api/owner/solvency", headers=app_node.owner)
    assert empty.status_code == 200 and empty.json()["assets"] == []  # no chain configured

    wallet = FakeWallet(100_000)
    checker = _checker(app_node, wallet)
    app_node.member("alice", sats=150_000)  # owner credit without coins behind it
    body = client.get("/api/owner/solvency", headers=app_node.owner).json()
    (sats,) = body["assets"]
    assert (sats["asset"], sats["wallet"], sats["liabilities"], sats["margin"]) == (
        SATS, 100_000, 150_000, -50_000,
    )  # fmt: skip
    assert sats["status"] == "shortfall" and body["solvent"] is False
    assert body["open_alerts"] == []  # looking changes no alert: the periodic check does

    asyncio.run(checker.check())
    body = client.get("/api/owner/solvency", headers=app_node.owner).json()
    (alert,) = body["open_alerts"]
    assert (alert["asset"], alert["shortfall"], alert["open"]) == (SATS, 50_000, True)
    metrics = client.get("/metrics", headers=app_node.owner).text
    assert 'scnode_exchange_solvency_margin{asset="SATS"} -50000.0' in metrics
    assert 'scnode_exchange_solvency_alerts_total{asset="SATS"} 1.0' in metrics

    wallet.down = True
    body = client.get("/api/owner/solvency", headers=app_node.owner).json()
    assert body["assets"][0]["status"] == "unknown" and body["solvent"] is None
    assert "cannot reach" in body["assets"][0]["error"]

    wallet.down = False
    wallet.trusted = 150_000
    asyncio.run(checker.check())
    body = client.get("/api/owner/solvency?history=true", headers=app_node.owner).json()
    assert body["open_alerts"] == [] and body["solvent"] is True
    assert [a["open"] for a in body["alerts"]] == [False]


def test_the_lifespan_runs_the_periodic_check(tmp_path: Path) -> None:
    settings, _ = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'exchange.sqlite3'}", solvency_interval_seconds=0.1,
        solvency_confirm_checks=1,
    )  # fmt: skip
    app = create_app(settings)
    with TestClient(app) as client:
        checker: SolvencyChecker = app.state.solvency
        assert checker.interval == 0.1 and checker.service.confirm_checks == 1
        deadline = time.monotonic() + 10
        while checker.last is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checker.last is not None  # checked on its own (no chain: no asset to compare)
        assert client.get("/healthz").status_code == 200
