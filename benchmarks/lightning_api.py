"""Lightning API figures: invoice creation, payment and status latency through the API, and
how long a paid invoice takes to reach a WebSocket client (cl-zmq → reconciler → event).

Run: .venv/bin/python benchmarks/lightning_api.py [--n 100]  (starts a minichain, the simnet
lightningd with a channel to the simulated hub, and one API process on loopback; prints the
figures; stops everything).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simnet.pytest_lightning import ChainHandle, LightningNodeHandle, open_channel
from tests.integration.lightning_api.handle import LightningApi


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def line(name: str, values: list[float]) -> str:
    return (
        f"{name:<34} n={len(values):<4} p50 {pct(values, 0.5):7.1f} ms  "
        f"p99 {pct(values, 0.99):7.1f} ms  mean {statistics.mean(values) * 1000:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    n = parser.parse_args().n
    with tempfile.TemporaryDirectory(prefix="lnapi-bench-", dir="/tmp") as tmp:
        base = Path(tmp)
        chain = ChainHandle(base)
        (base / "hub").mkdir()
        (base / "node").mkdir()
        hub = LightningNodeHandle(base / "hub", chain, alias="hub", role="hub", zmq=False)
        node = LightningNodeHandle(base / "node", chain, alias="node")
        (base / "api").mkdir()
        api: LightningApi | None = None
        try:
            open_channel(node, hub)
            node.shift_channel_balance(2_000_000_000)
            started = time.perf_counter()
            api = LightningApi(node, base / "api", hub.node_id).start()
            print(f"API start-up to first answer: {time.perf_counter() - started:.2f} s")
            create: list[float] = []
            notify: list[float] = []
            pay: list[float] = []
            status: list[float] = []
            with api.client("invoice") as inv, api.websocket() as ws:
                for i in range(n):
                    t = time.perf_counter()
                    r = inv.post(
                        "/v1/invoices",
                        json={
                            "member": "bench",
                            "idempotency_key": f"b-{i:06d}",
                            "amount_msat": 1000,
                        },
                    )
                    create.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    hub.pay_from_outside(r.json()["bolt11"])
                    while json.loads(ws.recv(timeout=30))["kind"] != "invoice_paid":
                        pass
                    notify.append(time.perf_counter() - t)
            with api.client("pay") as payer:
                for i in range(n):
                    outside = hub.make_outside_invoice(2000)
                    t = time.perf_counter()
                    p = payer.post(
                        "/v1/payments",
                        json={
                            "member": "bench",
                            "idempotency_key": f"p-{i:06d}",
                            "bolt11": outside["bolt11"],
                        },
                    )
                    pay.append(time.perf_counter() - t)
                    assert p.json()["state"] == "complete", p.text
                    t = time.perf_counter()
                    payer.get(f"/v1/payments/p-{i:06d}")
                    status.append(time.perf_counter() - t)
            print(line("POST /v1/invoices", create))
            print(line("outside pays → invoice_paid on WS", notify))
            print(line("POST /v1/payments (xpay via hub)", pay))
            print(line("GET /v1/payments/{key}", status))
        finally:
            if api is not None:
                api.stop()
            node.stop()
            hub.stop()
            chain.stop()


if __name__ == "__main__":
    main()
