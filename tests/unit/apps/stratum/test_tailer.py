"""The log tailer: partial lines, rename rotation, copytruncate, restarts — each acknowledged
share stored exactly once."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from scnode_stratum import synthetic
from scnode_stratum.parser import TranslatorLogParser
from scnode_stratum.store import StratumStore
from scnode_stratum.tailer import LogTailer


def append(path: Path, lines: list[str], end: str = "\n") -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + end)


def make_tailer(tmp_path: Path) -> tuple[LogTailer, StratumStore]:
    store = StratumStore(tmp_path / "state.db")
    return LogTailer(tmp_path / "translator.log", store, TranslatorLogParser()), store


def drain(tailer: LogTailer) -> None:
    for _ in range(20):
        if not tailer.step():
            return


def accepted(store: StratumStore) -> dict[str, int]:
    return {w: int(v["accepted"]) for w, v in store.totals(0).items() if v["accepted"]}


def shares(channel: int, first: int, last: int) -> list[str]:
    out: list[str] = []
    for count in range(first, last + 1):
        out += synthetic.share_lines(channel, count)
    return out


def start(log: Path) -> None:
    append(log, [*synthetic.start_lines(), *synthetic.connect_lines(1, "alice.rig1")])


def test_partial_line_waits_until_complete(tmp_path: Path) -> None:
    tailer, store = make_tailer(tmp_path)
    log = tmp_path / "translator.log"
    start(log)
    lines = shares(1, 1, 1)
    text = "\n".join(lines) + "\n"
    cut = text.rfind("SubmitSharesSuccess") + 12
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(text[:cut])
    drain(tailer)
    assert accepted(store) == {}
    position = store.position()
    assert position is not None and position.offset < log.stat().st_size
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(text[cut:])
    drain(tailer)
    assert accepted(store) == {"alice.rig1": 1}


def test_rename_rotation_reads_the_old_file_to_its_end_first(tmp_path: Path) -> None:
    tailer, store = make_tailer(tmp_path)
    log = tmp_path / "translator.log"
    start(log)
    append(log, shares(1, 1, 3))
    drain(tailer)
    log.rename(tmp_path / "translator.log.1")
    # the writer still appends to the old file until it reopens
    append(tmp_path / "translator.log.1", shares(1, 4, 5))
    append(log, shares(1, 6, 8))
    drain(tailer)
    assert accepted(store) == {"alice.rig1": 8}
    assert tailer.rotations == 1


def test_copytruncate_reads_the_copy_then_the_truncated_file(tmp_path: Path) -> None:
    tailer, store = make_tailer(tmp_path)
    log = tmp_path / "translator.log"
    start(log)
    append(log, shares(1, 1, 3))
    drain(tailer)
    append(log, shares(1, 4, 6))  # written, not read yet
    shutil.copyfile(log, tmp_path / "translator.log.1")
    with open(log, "r+b") as handle:
        handle.truncate(0)
    append(log, shares(1, 7, 7))
    drain(tailer)
    assert accepted(store) == {"alice.rig1": 7}
    assert tailer.truncations == 1
    assert tailer.gaps == 0


def test_copytruncate_noticed_even_when_the_file_grew_past_the_offset(tmp_path: Path) -> None:
    tailer, store = make_tailer(tmp_path)
    log = tmp_path / "translator.log"
    start(log)
    append(log, shares(1, 1, 2))
    drain(tailer)
    shutil.copyfile(log, tmp_path / "translator.log.1")
    with open(log, "r+b") as handle:
        handle.truncate(0)
    append(log, shares(1, 3, 30))  # longer than what we had read
    drain(tailer)
    assert accepted(store) == {"alice.rig1": 30}


def test_restart_continues_without_loss_or_double_count(tmp_path: Path) -> None:
    tailer, store = make_tailer(tmp_path)
    log = tmp_path / "translator.log"
    start(log)
    append(log, shares(1, 1, 4))
    drain(tailer)
    tailer.close()
    store.close()
    append(log, shares(1, 5, 9))
    tailer, store = make_tailer(tmp_path)
    drain(tailer)
    assert accepted(store) == {"alice.rig1": 9}
    # and the worker is still known after the restart (attribution state persisted)
    assert [w["worker"] for w in store.workers()] == ["alice.rig1"]


def test_rotation_while_stopped_finds_the_old_file_by_inode(tmp_path: Path) -> None:
    tailer, store = make_tailer(tmp_path)
    log = tmp_path / "translator.log"
    start(log)
    append(log, shares(1, 1, 2))
    drain(tailer)
    tailer.close()
    store.close()
    append(log, shares(1, 3, 4))
    log.rename(tmp_path / "translator.log.1")
    append(log, shares(1, 5, 6))
    tailer, store = make_tailer(tmp_path)
    drain(tailer)
    assert accepted(store) == {"alice.rig1": 6}


def test_copytruncate_while_stopped(tmp_path: Path) -> None:
    tailer, store = make_tailer(tmp_path)
    log = tmp_path / "translator.log"
    start(log)
    append(log, shares(1, 1, 2))
    drain(tailer)
    tailer.close()
    store.close()
    append(log, shares(1, 3, 4))
    shutil.copyfile(log, tmp_path / "translator.log.1")
    os.truncate(log, 0)
    append(log, shares(1, 5, 6))
    tailer, store = make_tailer(tmp_path)
    drain(tailer)
    assert accepted(store) == {"alice.rig1": 6}


def test_translator_restart_resets_channel_counters(tmp_path: Path) -> None:
    tailer, store = make_tailer(tmp_path)
    log = tmp_path / "translator.log"
    start(log)
    append(log, shares(1, 1, 5))
    # the translator restarts: channel 1 is a new channel counting from 1 again
    start(log)
    append(log, shares(1, 1, 2))
    drain(tailer)
    assert accepted(store) == {"alice.rig1": 7}


def test_compaction_keeps_window_totals(tmp_path: Path) -> None:
    tailer, store = make_tailer(tmp_path)
    log = tmp_path / "translator.log"
    old = time.time() - 3 * 3600
    append(log, [*synthetic.start_lines(old), *synthetic.connect_lines(1, "alice.rig1", old)])
    for count in range(1, 11):
        append(log, synthetic.share_lines(1, count, old + count))
    append(log, shares(1, 11, 12))
    drain(tailer)
    before = store.totals(time.time() - 86400)
    moved = store.compact(raw_retention=7200)
    assert moved == 20  # 10 submits + 10 acknowledgements folded into minute buckets
    assert store.totals(time.time() - 86400) == before
    assert store.totals(time.time() - 3600)["alice.rig1"]["accepted"] == 2


def test_monitoring_attribution_corrects_a_wrong_fifo_guess(tmp_path: Path) -> None:
    tailer, store = make_tailer(tmp_path)
    log = tmp_path / "translator.log"
    connect_1 = synthetic.connect_lines(1, "alice.rig1")
    connect_2 = synthetic.connect_lines(2, "bob.rig2")
    # both connect, then bob's authorize line comes first: FIFO gives bob channel 1
    append(log, [*synthetic.start_lines(), *connect_1[:-2], *connect_2[:-2]])
    append(log, [*connect_2[-2:], *connect_1[-2:]])
    append(log, shares(1, 1, 2))
    drain(tailer)
    assert accepted(store) == {"bob.rig2": 2}
    assert tailer.apply_attribution({1: "alice.rig1", 2: "bob.rig2"}) == 2
    assert tailer.apply_attribution({1: "alice.rig1", 2: "bob.rig2"}) == 0
    append(log, shares(1, 3, 5))
    drain(tailer)
    # what was stored stays (it is audited); new shares go to the right worker
    assert accepted(store) == {"bob.rig2": 2, "alice.rig1": 3}
    fixes = store.recent_events(10, kinds=["attribution_fix"])
    assert {e["data"]["after"] for e in fixes} == {"alice.rig1", "bob.rig2"}
    # the correction survives a restart
    tailer.close()
    store.close()
    append(log, shares(1, 6, 6))
    tailer, store = make_tailer(tmp_path)
    drain(tailer)
    assert accepted(store)["alice.rig1"] == 4


def test_monitoring_attribution_waits_while_behind_the_log(tmp_path: Path) -> None:
    tailer, store = make_tailer(tmp_path)
    log = tmp_path / "translator.log"
    start(log)
    drain(tailer)
    append(log, shares(1, 1, 1))  # not read yet
    assert tailer.apply_attribution({1: "mallory.x"}) == 0
    drain(tailer)
    assert accepted(store) == {"alice.rig1": 1}
