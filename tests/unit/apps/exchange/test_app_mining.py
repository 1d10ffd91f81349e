"""The mining package inside the exchange app: its routes are mounted behind the app's member
and owner auth, and its payout watcher runs in the app's lifespan when pools are configured."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi.testclient import TestClient

from scnode_exchange.api.app import create_app
from tests.unit.apps.exchange.api.node import Node, make_settings

KEY = "scnk_00000000_" + "a" * 43
POOLS = {
    "azc": {
        # nobody listens: the watcher only logs that it cannot reach them yet
        "chain_api_url": "http://127.0.0.1:9",
        "chain_api_key": KEY,
        "stats_api_url": "http://127.0.0.1:9",
        "stats_api_key": KEY,
        "fee_bps": 100,
        "first_window_start": 0,
    }
}


def test_members_register_workers_and_the_owner_sees_them(tmp_path: Path) -> None:
    settings, owner_key = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'm.sqlite3'}", mining_pools=POOLS, mining_interval=60
    )
    app = create_app(settings)
    with TestClient(app) as client:
        node = Node(client, owner_key, settings)
        assert app.state.mining_service is not None  # the watcher's service serves the routes
        _, alice = node.member("alice")
        _, bob = node.member("bob")
        assert client.get("/v1/mining/workers").status_code == 401
        made = client.post(
            "/v1/mining/workers", json={"pool": "azc", "name": "rig1"}, headers=alice
        )
        assert made.status_code == 201, made.text
        taken = client.post("/v1/mining/workers", json={"pool": "azc", "name": "rig1"}, headers=bob)
        assert taken.status_code == 409
        assert client.get("/v1/mining/workers", headers=bob).json()["workers"] == []
        assert client.get("/v1/owner/mining/workers", headers=alice).status_code == 403
        listed = client.get("/v1/owner/mining/workers", headers=node.owner).json()
        assert [w["name"] for w in listed["workers"]] == ["rig1"]
        assert client.portal is not None
        assert "PayoutWorkers" in client.portal.call(_task_names)  # the watcher runs


async def _task_names() -> set[str]:
    return {task.get_name() for task in asyncio.all_tasks()}
