"""Rotating API keys with playbooks/rotate_api_keys.yml while clients keep calling a real chain
API process (in front of the simnet chain stand-in): no request fails during the rotation, the
old key works for the grace period and is refused after it, the next run removes it.

The inventory has two hosts on this machine (local connection): `chain1.test`, whose chain API
keys were made by the apps' own first-run tool (scnode_core.keytool, as the scnode_apps role
does), and `apps1.test`, whose exchange holds a copy of chain1's `exchange` key (as the
scnode_apps role copies it) — so discovery, the cross-host copy and the key file format the apps
read are all exercised."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from simnet.pytest_chain import ChainNode
from tests.integration.chain_api.handle import ChainApi
from tests.integration.ops_apikeys.rotation import (
    REPO,
    ROTATE_TASK,
    Layout,
    Traffic,
    make_hosts,
    rotate,
    write_inventory,
)

pytestmark = pytest.mark.skipif(
    not (REPO / "collections" / "ansible_collections" / "satoshiware" / "scnode").exists(),
    reason="the collections/ link is missing: run `make collection-link`",
)


def test_rotation_under_traffic_fails_no_request(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi], tmp_path: Path
) -> None:
    layout = Layout(tmp_path)
    make_hosts(layout)
    api = start_chain_api(funded_node, API_KEYS_FILE=str(layout.keys_file))
    inventory = write_inventory(layout, api.port)
    old_exchange_key = layout.exchange_copy.read_text().strip()
    old_read_key = layout.token("read").read_text().strip()

    exchange = Traffic(api.url, lambda: layout.exchange_copy.read_text().strip()).start()
    # like Prometheus: reads its copy of the read key at every scrape
    reader = Traffic(api.url, lambda: layout.prometheus_copy.read_text().strip()).start()
    # a client that never switches: it works through the grace period, then is refused
    laggard = Traffic(api.url, lambda: old_exchange_key).start()
    time.sleep(0.5)

    first = rotate(inventory, tmp_path)

    assert ROTATE_TASK in first["chain1.test"], list(first["chain1.test"])
    rotated = first["chain1.test"][ROTATE_TASK]["results"]
    changed = {r["item"]["item"]["name"]: r for r in rotated}
    # the deposit key was never made on this host (no token file): not rotated
    assert set(changed) == {"chain1-read", "chain1-exchange"}
    assert all(r["changed"] for r in changed.values())
    new_exchange_key = layout.exchange_copy.read_text().strip()
    assert new_exchange_key != old_exchange_key
    assert new_exchange_key == layout.token("exchange").read_text().strip()
    assert layout.token("read").read_text().strip() != old_read_key
    # Prometheus's copy follows the read key; the dashboard holds none on this host: none made
    assert layout.prometheus_copy.read_text().strip() == layout.token("read").read_text().strip()
    assert not layout.dashboard_copy.exists()
    for secret in (old_exchange_key, new_exchange_key, old_read_key):
        assert secret not in first["_stdout"]

    # the laggard's key ends when the grace period ends, then it is refused
    ends = datetime.fromisoformat(changed["chain1-exchange"]["previous_not_after"]).timestamp()
    assert ends > time.time(), first["_durations"]
    time.sleep(ends - time.time() + 1.0)
    laggard.finish()
    assert set(laggard.statuses(until=ends - 0.2)) == {200}
    assert set(laggard.statuses(since=ends + 0.2)) == {401}
    with httpx.Client(base_url=api.url) as client:
        for key in (old_exchange_key, old_read_key):
            assert client.get("/v1/status", headers={"X-API-Key": key}).status_code == 401
        assert client.get("/v1/status", headers={"X-API-Key": new_exchange_key}).status_code == 200

    # the next run (keys younger than max_age: no new key) removes the dead ones from the file
    second = rotate(inventory, tmp_path, api_key_rotation_max_age=3600)
    again = {r["item"]["item"]["name"]: r for r in second["chain1.test"][ROTATE_TASK]["results"]}
    # (the first key's run on the shared keys file removes every dead key of the file)
    purged = sorted(i for r in again.values() for i in r["purged_key_ids"])
    assert purged == sorted(i for r in changed.values() for i in r["previous_key_ids"])
    assert not any(r["changed"] for r in second["chain1.test"][ROTATE_TASK]["results"][1:])
    assert again["chain1-exchange"]["key_id"] == changed["chain1-exchange"]["key_id"]
    assert layout.exchange_copy.read_text().strip() == new_exchange_key
    names = sorted(r["name"] for r in json.loads(layout.keys_file.read_text())["keys"])
    assert names == ["chain1-exchange", "chain1-read"]

    time.sleep(0.3)
    exchange.finish()
    reader.finish()
    # the clients that switch never saw a refusal, before, during or after the rotations
    for switching in (exchange, reader):
        assert set(switching.statuses()) == {200}
        assert len(switching.answers) > 50
    assert "Traceback" not in api.log()
    print(  # the figures of a run (pytest -s)
        f"requests answered 200 during two rotations: exchange {len(exchange.answers)},"
        f" reader {len(reader.answers)}; laggard {len(laggard.statuses(until=ends))} before its"
        f" key ended, {len(laggard.statuses(since=ends))} refused after"
    )
