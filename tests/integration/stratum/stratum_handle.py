"""Handle on a stratum stats API process (``python -m scnode_stratum``) following a log file,
with a read key generated at test time. Used by the tests and by benchmarks/stratum_tailer.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from scnode_core.apikeys import ApiKeyStore, generate
from simnet.ports import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[3]


@dataclass
class StratumApi:
    workdir: Path
    log_file: Path
    port: int = field(default_factory=free_port)
    token: str = ""
    proc: subprocess.Popen[bytes] | None = None
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        key = generate({"read"}, name="test-read")
        self.token = key.token
        keys_file = self.workdir / "api-keys.json"
        ApiKeyStore([key.record]).save(keys_file)
        env = {
            "LOG_FILE": str(self.log_file),
            "STATE_DB": str(self.workdir / "stratum.sqlite"),
            "API_KEYS_FILE": str(keys_file),
            "POLL_INTERVAL": "0.05",
            "ENVIRONMENT": "test",
            **self.settings,
        }
        env_file = self.workdir / "stratum-api.env"
        env_file.write_text("".join(f"SCNODE_STRATUM_API_{k}={v}\n" for k, v in env.items()))
        return env_file

    def start(self, timeout: float = 20.0) -> None:
        env_file = self.workdir / "stratum-api.env"
        if not env_file.exists():
            self.write_config()
        out = open(self.workdir / "api.out", "ab")  # noqa: SIM115 - handed to the child
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(PROJECT_ROOT / "apps"), str(PROJECT_ROOT), env.get("PYTHONPATH", "")]
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scnode_stratum",
                "--env-file",
                str(env_file),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"stratum API exited: {(self.workdir / 'api.out').read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError("stratum API did not become healthy")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(
            f"{self.url}{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def accepted(self) -> dict[str, int]:
        workers = self.get("/v1/stratum/workers")["workers"]
        return {
            w["worker"]: w["windows"]["24h"]["shares_accepted"]
            for w in workers
            if w["windows"]["24h"]["shares_accepted"]
        }
