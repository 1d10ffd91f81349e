"""End to end with the simnet translator and miners writing the real log format: workers appear
within seconds; a translator restart and a log rotation (rename + SIGHUP) lose no
acknowledged share and count none twice."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from simnet.pytest_mining import MinerProcess, TranslatorProcess, wait_for
from tests.integration.stratum.stratum_handle import StratumApi


@pytest.fixture
def stratum_api(tmp_path: Path) -> Iterator[Callable[..., StratumApi]]:
    apis: list[StratumApi] = []

    def start(log_file: Path, **settings: str) -> StratumApi:
        workdir = tmp_path / f"stratum-api-{len(apis)}"
        workdir.mkdir()
        api = StratumApi(workdir, log_file, settings=settings)
        apis.append(api)
        api.start()
        return api

    yield start
    for api in apis:
        api.stop()


def acknowledged_in(paths: list[Path]) -> int:
    return sum(p.read_text().count("Received: SubmitSharesSuccess(") for p in paths if p.exists())


@pytest.mark.parametrize("cross_check", [False, True], ids=["log-only", "monitoring-api"])
def test_simnet_workers_appear_and_every_share_counts_once(
    mining_stack: Callable[..., tuple[TranslatorProcess, MinerProcess]],
    stratum_api: Callable[..., StratumApi],
    cross_check: bool,
) -> None:
    translator, miners = mining_stack({"alice.rig1": "2T", "bob.rig2": "1T"})
    began = time.monotonic()
    settings = {"MONITORING_URL": translator.monitoring_url, "MONITORING_INTERVAL": "0.5"}
    api = stratum_api(translator.log_path, **(settings if cross_check else {}))

    def both_visible() -> bool:
        return {"alice.rig1", "bob.rig2"} <= set(api.accepted())

    wait_for(both_visible, timeout=15, what="both workers in the stats API")
    visible_after = time.monotonic() - began
    assert visible_after < 15
    members = {m["member"] for m in api.get("/v1/stratum/members")["members"]}
    assert members == {"alice", "bob"}

    # translator restart: new channels counting from 1, same log file
    translator.restart()
    wait_for(lambda: translator.log_text().count("Starting Translator Proxy") == 2, what="restart")
    after_restart = sum(api.accepted().values())
    wait_for(lambda: sum(api.accepted().values()) > after_restart + 2, timeout=30, what="shares")

    # rotation by rename; the translator reopens on SIGHUP
    rotated = translator.log_path.with_name(translator.log_path.name + ".1")
    translator.log_path.rename(rotated)
    translator.sighup()
    wait_for(lambda: translator.log_path.exists(), what="a new log file")
    wait_for(
        lambda: "SubmitSharesSuccess" in translator.log_path.read_text(), timeout=30, what="shares"
    )

    # our channel -> worker attribution matches the translator's own (monitoring API)
    def same_attribution() -> bool:
        theirs = {c["channel_id"]: c["sv1_username"] for c in translator.sv1_clients()}
        snapshot = api.get("/v1/translator/miner-work/snapshot")["data"]["items"]
        ours = {i["channel_id"]: i["authorized_worker_name"] for i in snapshot}
        return len(theirs) == 2 and ours == theirs

    wait_for(same_attribution, timeout=10, what="the same channel attribution")
    status = api.get("/v1/translator/status")
    assert status["monitoring_status"] == ("ok" if cross_check else "unconfigured")

    miners.stop()
    time.sleep(0.5)
    files = [rotated, translator.log_path]
    expected = acknowledged_in(files)

    def all_counted() -> bool:
        return sum(api.accepted().values()) >= expected

    wait_for(all_counted, timeout=15, what="every acknowledged share")
    time.sleep(0.3)
    counted = api.accepted()
    assert sum(counted.values()) == expected
    assert set(counted) == {"alice.rig1", "bob.rig2"}  # nothing left unattributed
    pool: dict[str, Any] = api.get("/v1/stratum/pool")
    assert pool["windows"]["15m"]["shares_accepted"] == expected
    assert api.get("/v1/stratum/workers/alice.rig1")["windows"]["15m"]["hashrate_hps"] > 0
