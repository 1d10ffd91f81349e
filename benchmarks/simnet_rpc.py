"""Benchmark of the simulated chain daemon: start-up time and sustained RPC calls per second.

    .venv/bin/python benchmarks/simnet_rpc.py [--seconds 5] [--clients 4]

Targets (issue 4): start-up < 2 s, >= 1,000 calls/s on loopback with keep-alive
(getblockcount and getbalances). Prints the figures; never fails on them.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from simnet.pytest_chain import ChainNode


def _hammer(
    node: ChainNode, method: str, wallet: str | None, seconds: float, counts: list[int]
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", node.rpc_port, timeout=30)
    auth = "Basic " + base64.b64encode(f"{node.user}:{node.password}".encode()).decode()
    path = "/" if wallet is None else f"/wallet/{wallet}"
    body = json.dumps({"jsonrpc": "1.0", "id": 1, "method": method, "params": []})
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    deadline = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < deadline:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        n += 1
    conn.close()
    counts.append(n)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), a figure independent of machine load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    node: ChainNode, method: str, wallet: str | None, seconds: float, clients: int
) -> float:
    counts: list[int] = []
    threads = [
        threading.Thread(target=_hammer, args=(node, method, wallet, seconds, counts))
        for _ in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="simnet-bench-"))
    node = ChainNode(tmp, "bitcoin", "regtest", None, {}, [])
    try:
        started = time.perf_counter()
        node.start()
        startup = time.perf_counter() - started
        assert node.proc is not None
        print(
            f"start-up (process start to control API answering): {startup:.2f} s wall, "
            f"{cpu_seconds(node.proc.pid):.2f} s CPU (target < 2 s)"
        )
        node.rpc("createwallet", "w")
        node.rpc("generatetoaddress", 110, node.rpc("getnewaddress"))
        print(f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        for method, wallet in (("getblockcount", None), ("getbalances", "w")):
            cpu0 = cpu_seconds(node.proc.pid)
            rate = measure(node, method, wallet, args.seconds, args.clients)
            cpu = cpu_seconds(node.proc.pid) - cpu0
            calls = rate * args.seconds
            print(
                f"{method}: daemon CPU {cpu / calls * 1e6:.0f} µs per call "
                f"= {calls / cpu:,.0f} calls per CPU-second"
            )
            print(
                f"{method}: {rate:,.0f} calls/s ({args.clients} keep-alive clients, "
                f"{args.seconds:.0f} s; target >= 1,000/s)"
            )
        node.stop()
        node.start()
        restart = time.perf_counter()
        node.stop()
        started = time.perf_counter()
        node.start()
        print(
            f"restart with 110 blocks and a wallet on disk: {time.perf_counter() - started:.2f} s"
        )
        _ = restart
        node.stop()
    finally:
        node.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
