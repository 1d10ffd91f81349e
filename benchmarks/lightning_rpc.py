"""Lightning stand-in figures: start-up time, JSON-RPC calls/s on the unix socket, payments/s.

Run: .venv/bin/python benchmarks/lightning_rpc.py  (starts a minichain, a node and a hub on
loopback, prints the figures, stops everything).
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from pathlib import Path

from simnet.pytest_lightning import ChainHandle, LightningNodeHandle, open_channel

CALLS = 3000
PAYMENTS = 200


def rpc_calls_per_second(path: Path, calls: int) -> float:
    """getinfo calls on one connection, one at a time (as pyln-client does)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        start = time.perf_counter()
        for i in range(calls):
            s.sendall(
                json.dumps({"jsonrpc": "2.0", "id": i, "method": "getinfo", "params": {}}).encode()
            )
            buf = b""
            while not buf.endswith(b"\n\n"):
                buf += s.recv(65536)
        return calls / (time.perf_counter() - start)


def main() -> None:
    """Print the figures."""
    with tempfile.TemporaryDirectory(prefix="ln-bench-") as tmp:
        base = Path(tmp)
        chain = ChainHandle(base)
        handles: list[LightningNodeHandle] = []
        try:
            (base / "hub").mkdir()
            (base / "node").mkdir()
            hub = LightningNodeHandle(base / "hub", chain, alias="hub", role="hub", zmq=False)
            handles.append(hub)
            start = time.perf_counter()
            node = LightningNodeHandle(base / "node", chain, alias="node")
            handles.append(node)
            print(
                f"start-up (process start to RPC + control API answering): "
                f"{time.perf_counter() - start:.2f} s"
            )
            print(
                "getinfo over the unix socket: "
                f"{rpc_calls_per_second(node.rpc_path, CALLS):.0f} calls/s"
            )
            open_channel(node, hub, amount_sat=5_000_000)
            start = time.perf_counter()
            for _ in range(PAYMENTS):
                node.rpc.xpay(hub.make_outside_invoice(1000)["bolt11"])
            rate = PAYMENTS / (time.perf_counter() - start)
            print(
                "xpay to the outside world through the hub (incl. invoice creation): "
                f"{rate:.0f} payments/s"
            )
        finally:
            for handle in handles:
                handle.stop()
            chain.stop()


if __name__ == "__main__":
    main()
