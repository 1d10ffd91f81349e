"""Benchmark of the stratum stats API's tailer: throughput and line-written → visible latency.

    .venv/bin/python benchmarks/stratum_tailer.py [--lines 400000] [--rate 2000] [--seconds 10]

Targets (issue 7): tailer + parser + SQLite windows ≥ 50,000 log lines/s sustained on one core;
a line written → visible in the API p99 < 500 ms at 2,000 lines/s.

1. Throughput: the tailer's own loop (read, parse, commit) in this process, pinned to one CPU,
   over a file of real-shaped lines: (a) the synthetic v1.5.0 share mix (4 lines per
   acknowledged share) and (b) the real v1.5.0 debug log repeated (multi-line records, noise).
2. Latency: a `python -m scnode_stratum` process follows a file this script appends to at
   ``--rate`` lines/s (batches every 10 ms); the WebSocket live feed delivers each acknowledged
   share; latency = arrival - the line's own timestamp. Prints; never fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apps"))
from scnode_stratum import synthetic
from scnode_stratum.parser import TranslatorLogParser
from scnode_stratum.store import StratumStore
from scnode_stratum.tailer import LogTailer
from tests.integration.stratum.stratum_handle import StratumApi

REAL_DEBUG = Path("/work/shared/fixtures/translator/real-v1.5.0/debug/translator.log")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def throughput(name: str, lines: list[str], workdir: Path) -> None:
    log = workdir / f"{name}.log"
    log.write_text("\n".join(lines) + "\n")
    store = StratumStore(workdir / f"{name}.sqlite")
    tailer = LogTailer(log, store, TranslatorLogParser(), chunk_bytes=1 << 20)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    while tailer.step():
        pass
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    rows = store.totals(0)
    accepted = sum(int(v["accepted"]) for v in rows.values())
    print(
        f"throughput {name}: {len(lines):,} lines in {wall:.2f} s = {len(lines) / wall:,.0f} "
        f"lines/s (cpu {cpu:.2f} s, {len(lines) / cpu:,.0f} lines/cpu-s), "
        f"{accepted:,} shares stored, file {log.stat().st_size / 1e6:.1f} MB"
    )
    tailer.close()
    store.close()


def latency(rate: int, seconds: float, workdir: Path) -> None:
    log = workdir / "latency.log"
    log.touch()
    api = StratumApi(workdir, log, settings={"POLL_INTERVAL": "0.05"})
    api.start()
    try:
        workers = ["alice.rig1", "bob.rig2", "carol.rig3", "dave.rig4"]
        with open(log, "a", encoding="utf-8") as handle:
            handle.write("\n".join(synthetic.start_lines()) + "\n")
            for i, worker in enumerate(workers, start=1):
                handle.write("\n".join(synthetic.connect_lines(i, worker)) + "\n")
        latencies: list[float] = []
        stop = threading.Event()
        url = f"ws://127.0.0.1:{api.port}/v1/stratum/ws"

        def reader() -> None:
            with connect(url, additional_headers={"X-API-Key": api.token}) as ws:
                while not stop.is_set():
                    try:
                        event = json.loads(ws.recv(timeout=0.5))
                    except TimeoutError:
                        continue
                    if event.get("kind") == "accept":
                        latencies.append(time.time() - event["ts"])

        thread = threading.Thread(target=reader)
        thread.start()
        time.sleep(0.5)
        counts = [0] * len(workers)
        per_batch = max(4, rate // 100)
        written = 0
        t0 = time.monotonic()
        with open(log, "a", encoding="utf-8") as handle:
            n = 0
            while time.monotonic() - t0 < seconds:
                batch: list[str] = []
                while len(batch) < per_batch:
                    i = n % len(workers)
                    counts[i] += 1
                    batch += synthetic.share_lines(i + 1, counts[i])
                    n += 1
                handle.write("\n".join(batch) + "\n")
                handle.flush()
                written += len(batch)
                target = t0 + written / rate
                time.sleep(max(0.0, target - time.monotonic()))
        elapsed = time.monotonic() - t0
        time.sleep(1.0)
        stop.set()
        thread.join()
        ms = [x * 1000 for x in latencies]
        print(
            f"latency at {written / elapsed:,.0f} lines/s for {elapsed:.1f} s: {len(ms):,} "
            f"acknowledged shares seen of {n:,}; line written -> WebSocket event "
            f"p50 {_pct(ms, 0.5):.0f} ms, p99 {_pct(ms, 0.99):.0f} ms, max {max(ms):.0f} ms"
        )
    finally:
        api.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=400_000)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with tempfile.TemporaryDirectory(prefix="stratum-bench-") as tmp:
        workdir = Path(tmp)
        workers = [f"member{i}.rig{j}" for i in range(10) for j in range(3)]
        lines = list(synthetic.session(workers, args.lines // 4))
        throughput("synthetic-shares", lines, workdir)
        if REAL_DEBUG.exists():
            real = REAL_DEBUG.read_text().rstrip("\n").split("\n")
            repeat = max(1, args.lines // len(real))
            throughput("real-debug-mix", real * repeat, workdir)
        latency(args.rate, args.seconds, workdir)


if __name__ == "__main__":
    main()
