"""A stats API process killed with SIGKILL again and again while the translator log grows and
rotates (rename and copytruncate) counts every acknowledged share exactly once."""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scnode_stratum import synthetic
from tests.integration.stratum.stratum_handle import StratumApi

WORKERS = ["alice.rig1", "alice.rig2", "bob.rig1"]
SHARES = 2400


@pytest.fixture
def api(tmp_path: Path) -> Iterator[StratumApi]:
    handle = StratumApi(tmp_path, tmp_path / "log" / "stratum-bitcoin.log")
    handle.log_file.parent.mkdir()
    handle.log_file.touch()
    yield handle
    handle.stop()


def writer(log: Path, lines: list[str], rotation: str | None) -> None:
    """Append lines in bursts of 200 (~10,000 lines/s), after rotating the file if asked."""
    if rotation == "rename":
        log.rename(log.with_name(log.name + ".1"))
    elif rotation == "copytruncate":
        rotated = log.with_name(log.name + ".1")
        rotated.unlink(missing_ok=True)  # logrotate shifts it to .2; one copy is enough here
        shutil.copyfile(log, rotated)
        os.truncate(log, 0)
    with open(log, "a", encoding="utf-8") as handle:
        for i in range(0, len(lines), 200):
            handle.write("\n".join(lines[i : i + 200]) + "\n")
            handle.flush()
            time.sleep(0.02)


def test_sigkill_restarts_and_rotations_count_each_share_once(api: StratumApi) -> None:
    lines = list(synthetic.session(WORKERS, SHARES))
    expected = sum(1 for line in lines if "SubmitSharesSuccess" in line)
    assert expected == SHARES
    rng = random.Random(7)
    segments = 5
    size = -(-len(lines) // segments)
    api.start()
    for i in range(segments):
        rotation = {1: "rename", 3: "copytruncate"}.get(i)
        part = lines[i * size : (i + 1) * size]
        thread = threading.Thread(target=writer, args=(api.log_file, part, rotation))
        thread.start()
        time.sleep(rng.uniform(0.05, 0.3))
        api.kill()  # mid-stream: the writer is still appending
        thread.join()
        api.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sum(api.accepted().values()) < expected:
        time.sleep(0.1)
    time.sleep(0.3)  # anything counted twice would show up now
    counted = api.accepted()
    per_worker = {w: SHARES // len(WORKERS) for w in WORKERS}
    assert counted == per_worker
    status = api.get("/v1/translator/status")
    assert status["downstream_clients"] == len(WORKERS)
