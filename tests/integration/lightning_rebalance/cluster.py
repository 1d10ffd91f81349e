"""Handle on the simulated SC Cluster's rebalance endpoint (`python -m simnet.cluster
rebalance`) in front of the hub stand-in and the test's chain."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from simnet.pytest_lightning import ChainHandle, LightningNodeHandle, free_port


@dataclass
class ClusterRebalance:
    hub: LightningNodeHandle
    chain: ChainHandle
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ClusterRebalance:
        password = self.workdir / "chain-password"
        password.write_text(self.chain.password)
        log = open(self.workdir / "cluster.log", "ab")  # noqa: SIM115 - handed to the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "simnet.cluster",
                "rebalance",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--hub-control",
                f"http://127.0.0.1:{self.hub.control_port}",
                "--chain-rpc",
                f"http://127.0.0.1:{self.chain.port}/",
                "--chain-rpc-user",
                self.chain.user,
                "--chain-rpc-password-file",
                str(password),
                "--state",
                str(self.workdir / "swaps.json"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cluster rebalance exited: {self.log()}")
            try:
                if httpx.get(f"{self.url}/v1/swaps", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"cluster rebalance did not start: {self.log()}")

    def swaps(self) -> list[dict[str, Any]]:
        swaps: list[dict[str, Any]] = httpx.get(f"{self.url}/v1/swaps", timeout=10).json()["swaps"]
        return swaps

    def refuse(self, reason: str | None) -> None:
        httpx.post(f"{self.url}/v1/control/refuse", json={"reason": reason}, timeout=10)

    def hold_onchain(self, hold: bool) -> None:
        httpx.post(f"{self.url}/v1/control/hold-onchain", json={"hold": hold}, timeout=10)

    def log(self) -> str:
        path = self.workdir / "cluster.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
