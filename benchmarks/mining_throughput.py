"""Figures for the mining stand-ins: real hash rate of a simulated miner, and how many
`mining.submit` the translator stand-in answers per second at info and debug.

    .venv/bin/python benchmarks/mining_throughput.py
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simnet.pytest_mining import free_port, http_json, wait_for  # noqa: E402
from simnet.translator import work  # noqa: E402
from simnet.translator.config import render_config  # noqa: E402


def hash_rate(seconds: float = 2.0) -> float:
    prefix = bytes(76)
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for nonce in range(1000):
            work.hash_value(prefix + struct.pack("<I", nonce))
        count += 1000
    return count / (time.perf_counter() - start)


def submits_per_second(rust_log: str, n: int = 3000) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        port, mon = free_port(), free_port()
        cfg = Path(tmp) / "c.toml"
        cfg.write_text(
            render_config(
                upstream_port=free_port(),
                downstream_port=port,
                user_identity="bench",
                log_file=str(Path(tmp) / "t.log"),
                monitoring_address=f"127.0.0.1:{mon}",
                enable_vardiff=False,
            )
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RUST_LOG": rust_log}
        env["SIMNET_JOB_INTERVAL_SECS"] = "600"
        proc = subprocess.Popen(
            [sys.executable, "-m", "simnet.translator", "-c", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            wait_for(lambda: http_json(f"http://127.0.0.1:{mon}/api/v1/health")["status"] == "ok")
            sock = socket.create_connection(("127.0.0.1", port))
            reader = sock.makefile("rb")
            sock.sendall(b'{"id":1,"method":"mining.subscribe","params":["bench"]}\n')
            sock.sendall(b'{"id":2,"method":"mining.authorize","params":["b.rig","x"]}\n')
            job = None
            while job is None:
                msg = json.loads(reader.readline())
                if msg.get("method") == "mining.notify":
                    job = msg["params"]
            lines = b"".join(
                json.dumps(
                    {
                        "id": 10 + i,
                        "method": "mining.submit",
                        "params": ["b.rig", job[0], f"{i:08x}", job[7], f"{i:08x}"],
                    }
                ).encode()
                + b"\n"
                for i in range(n)
            )
            start = time.perf_counter()
            sock.sendall(lines)
            answered = 0
            while answered < n:
                msg = json.loads(reader.readline())
                if isinstance(msg.get("id"), int) and msg["id"] >= 10:
                    answered += 1
            rate = n / (time.perf_counter() - start)
            sock.close()
            return rate
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main() -> int:
    print(f"miner hashing: {hash_rate():,.0f} real SHA256d/s on one core")
    scale = work.work_scale()
    print(
        f"  = {hash_rate(0.5) * scale / 1e12:,.1f} simulated TH/s at SIMNET_WORK_SCALE={scale:.0f}"
    )
    for level in ("info", "debug"):
        rate = submits_per_second(level)
        print(f"translator: {rate:,.0f} mining.submit answered/s (RUST_LOG={level})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
