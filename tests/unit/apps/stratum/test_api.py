"""The stratum stats API over a synthetic translator log: auth, REST, WebSocket, metrics and the
upstream-compatible paths."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from scnode_core.apikeys import ApiKeyStore, generate
from scnode_stratum import synthetic
from scnode_stratum.app import create_app, worker_state
from scnode_stratum.settings import StratumApiSettings


def append(path: Path, lines: list[str]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


class Api:
    def __init__(self, client: TestClient, read_key: str, other_key: str, log: Path) -> None:
        self.client, self.read_key, self.other_key, self.log = client, read_key, other_key, log

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(
            path, params=params, headers={"Authorization": f"Bearer {self.read_key}"}
        )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    read = generate({"read"}, "dashboard")
    other = generate({"deposit"}, "exchange")
    keys = tmp_path / "keys.json"
    ApiKeyStore([read.record, other.record]).save(keys)
    log = tmp_path / "translator.log"
    log.touch()
    settings = StratumApiSettings(
        log_file=log,
        state_db=tmp_path / "stratum.db",
        api_keys_file=keys,
        poll_interval=0.02,
        environment="test",
    )
    with TestClient(create_app(settings)) as client:
        yield Api(client, read.token, other.token, log)


def fill(api: Api) -> None:
    lines = [*synthetic.start_lines()]
    lines += synthetic.connect_lines(1, "alice.rig1")
    lines += synthetic.connect_lines(2, "alice.rig2")
    lines += synthetic.connect_lines(3, "bob.rig1")
    for count in range(1, 7):
        lines += synthetic.share_lines(1, count)
    for count in range(1, 4):
        lines += synthetic.share_lines(2, count)
        lines += synthetic.share_lines(3, count)
    append(api.log, lines)
    wait_until(lambda: api.get("/v1/stratum/pool")["windows"]["1m"]["shares_accepted"] == 12)


def test_auth_401_403_and_public_health(api: Api) -> None:
    client = api.client
    assert client.get("/healthz").status_code == 200
    for path in ("/v1/stratum/pool", "/v1/miners", "/v1/translator/status", "/metrics"):
        missing = client.get(path)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        bad = client.get(path, headers={"Authorization": "Bearer scnk_00000000_" + "A" * 43})
        assert bad.status_code == 401
        forbidden = client.get(path, headers={"X-API-Key": api.other_key})
        assert forbidden.status_code == 403
        assert client.get(path, headers={"X-API-Key": api.read_key}).status_code == 200


def test_workers_members_pool_and_hashrate(api: Api) -> None:
    fill(api)
    pool = api.get("/v1/stratum/pool")
    assert pool["workers"] == 3 and pool["workers_connected"] == 3
    one = pool["windows"]["1m"]
    assert one["shares_submitted"] == 12 and one["shares_rejected"] == 0
    # each acknowledged share counts with its channel's difficulty (diff1 / target); the
    # hashrate estimate is accepted difficulty * 2^32 / window seconds
    difficulty = 0xFFFF * 2**208 / int(synthetic.TARGET, 16)
    assert one["accepted_difficulty"] == pytest.approx(12 * difficulty)
    assert one["hashrate_hps"] == pytest.approx(12 * difficulty * 2**32 / 60)
    workers = {w["worker"]: w for w in api.get("/v1/stratum/workers")["workers"]}
    assert workers["alice.rig1"]["windows"]["15m"]["shares_accepted"] == 6
    assert workers["alice.rig1"]["state"] == "ok"
    assert workers["alice.rig1"]["member"] == "alice"
    alice = api.get("/v1/stratum/members/alice")
    assert sorted(alice["workers"]) == ["alice.rig1", "alice.rig2"]
    assert alice["windows"]["1h"]["shares_accepted"] == 9
    members = {m["member"]: m for m in api.get("/v1/stratum/members")["members"]}
    assert members["bob"]["windows"]["24h"]["shares_accepted"] == 3
    one_worker = api.get("/v1/stratum/workers/bob.rig1")
    assert one_worker["windows"]["1m"]["shares_accepted"] == 3
    assert (
        api.client.get(
            "/v1/stratum/workers/nobody", headers={"X-API-Key": api.read_key}
        ).status_code
        == 404
    )
    hist = api.get("/v1/stratum/hashrate", window="15m", bucket="1m", member="alice")
    assert len(hist["buckets"]) in (15, 16)
    assert sum(b["shares_accepted"] for b in hist["buckets"]) == 9
    assert hist["buckets"][-1]["hashrate_hps"] > 0


def test_work_in_a_time_range(api: Api) -> None:
    before = time.time() - 1
    fill(api)
    work = api.get("/v1/stratum/work", start=before)
    assert work["members"]["alice"]["shares_accepted"] == 9
    assert work["workers"]["bob.rig1"]["shares_accepted"] == 3
    assert work["workers"]["bob.rig1"]["accepted_difficulty"] > 0
    assert work["unattributed"] == {}
    assert api.get("/v1/stratum/work", start=before - 60, end=before)["workers"] == {}


def test_upstream_compatible_paths(api: Api) -> None:
    fill(api)
    miners = api.get("/v1/miners")
    assert miners["status"] == "ok"
    assert {m["miner_id"] for m in miners["data"]["items"]} == {
        "alice.rig1",
        "alice.rig2",
        "bob.rig1",
    }
    assert miners["data"]["total"] == 3
    rate = api.get("/v1/metrics/hashrate", window="15m", bucket="1m")
    assert rate["data"]["unit"] == "hps" and sum(p["hashrate"] for p in rate["data"]["series"]) > 0
    shares = api.get("/v1/metrics/shares", window="1h", bucket="5m", miner_id="alice.rig1")
    assert sum(p["value"] for p in shares["data"]["series"]["accepted"]) == 6
    status = api.get("/v1/translator/status")
    assert status["status"] == "ok" and status["upstream_channels"] == 3
    snapshot = api.get("/v1/translator/miner-work/snapshot")
    items = {i["authorized_worker_name"]: i for i in snapshot["data"]["items"]}
    assert items["alice.rig1"]["shares_acknowledged"] == 6
    assert items["bob.rig1"]["upstream_user_identity"] == "sri_user.miner3"
    events = api.get("/v1/translator/events/recent", limit=50)
    assert {"authorize", "connect", "channel_open"} <= {e["category"] for e in events}
    tail = api.get("/v1/translator/logs/tail", lines=5)
    assert len(tail) == 5 and tail[0]["raw"].endswith("Upstream: received frame.")
    summary = api.get("/v1/translator/summary", lines=50)
    assert summary["total_records_scanned"] == 50
    assert summary["counts_by_level"]["INFO"] > 0
    append(api.log, [synthetic.line("error", "translator_sv2", "Invalid share for channel id: 2")])
    wait_until(lambda: len(api.get("/v1/translator/errors/recent")) == 1)
    assert api.get("/v1/stratum/workers/alice.rig2")["windows"]["1m"]["shares_rejected"] == 1


def test_websocket_feed_with_cursor(api: Api) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        api.client.websocket_connect("/v1/stratum/ws") as ws,
    ):
        ws.receive_json()
    assert refused.value.code == 4401
    with (
        pytest.raises(WebSocketDisconnect) as forbidden,
        api.client.websocket_connect("/v1/stratum/ws", headers={"X-API-Key": api.other_key}) as ws,
    ):
        ws.receive_json()
    assert forbidden.value.code == 4403
    headers = {"X-API-Key": api.read_key}
    with api.client.websocket_connect("/v1/stratum/ws?cursor=0", headers=headers) as ws:
        append(api.log, [*synthetic.start_lines(), *synthetic.connect_lines(1, "carol.a")])
        append(api.log, synthetic.share_lines(1, 1))
        seen: list[dict[str, Any]] = []
        while not any(e["kind"] == "accept" for e in seen):
            seen.append(ws.receive_json())
        kinds = [e["kind"] for e in seen]
        assert kinds.index("connect") < kinds.index("authorize") < kinds.index("accept")
        cursor = seen[-1]["id"]
    with api.client.websocket_connect(f"/v1/stratum/ws?cursor={cursor}", headers=headers) as ws:
        append(api.log, synthetic.share_lines(1, 2))
        event = ws.receive_json()
        assert event["id"] == cursor + 1 and event["kind"] == "submit"
    url = f"/v1/stratum/ws?cursor={cursor}&kinds=accept"
    with api.client.websocket_connect(url, headers=headers) as ws:
        event = ws.receive_json()
        assert event["kind"] == "accept" and event["accepted"] == 1 and event["id"] == cursor + 2


def test_metrics(api: Api) -> None:
    fill(api)
    text = api.client.get("/metrics", headers={"X-API-Key": api.read_key}).text
    assert 'scnode_stratum_log_lines_total{instance="btc"}' in text
    assert 'scnode_stratum_hashrate_hps{instance="btc",window="1m",worker="alice.rig1"}' in text
    assert "scnode_stratum_tail_lag_bytes" in text


def test_worker_states() -> None:
    now = 10_000.0
    assert worker_state(now - 90, now) == "ok"
    assert worker_state(now - 91, now) == "low"
    assert worker_state(now - 1800, now) == "off"
    assert worker_state(now - 1801, now) == "dis"
    assert worker_state(None, now) == "dis"


def test_health_is_503_while_the_log_file_is_missing(tmp_path: Path) -> None:
    read = generate({"read"})
    keys = tmp_path / "keys.json"
    ApiKeyStore([read.record]).save(keys)
    settings = StratumApiSettings(
        log_file=tmp_path / "not-yet.log",
        state_db=tmp_path / "s.db",
        api_keys_file=keys,
        poll_interval=0.02,
    )
    with TestClient(create_app(settings)) as client:
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.json()["log_file_exists"] is False
        # the translator starts later: the file is picked up
        append(
            tmp_path / "not-yet.log", [*synthetic.start_lines(), *synthetic.connect_lines(1, "x.y")]
        )
        wait_until(lambda: client.get("/healthz").json()["lines"] == 9)
        assert client.get("/healthz").status_code == 200


def test_main_names_bad_settings_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from scnode_stratum.__main__ import main

    for name in ("LOG_FILE", "STATE_DB", "API_KEYS_FILE"):
        monkeypatch.delenv(f"SCNODE_STRATUM_API_{name}", raising=False)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "SCNODE_STRATUM_API_LOG_FILE" in err and "SCNODE_STRATUM_API_STATE_DB" in err
