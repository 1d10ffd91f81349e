"""Handle on a Lightning API process in front of a lightningd (the simnet stand-in here; the
same handle works for a real one), with keys of each scope generated at test time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from scnode_core.apikeys import ApiKeyStore, generate
from simnet.pytest_lightning import LightningNodeHandle, free_port

# (node, hub): the simnet lightningd and the simulated SC Cluster hub it has a channel with
LightningPair = tuple[LightningNodeHandle, LightningNodeHandle]

SCOPES = {
    "read": {"read"},
    "invoice": {"read", "invoice"},
    "pay": {"read", "pay"},
}


@dataclass
class LightningApi:
    node: LightningNodeHandle
    workdir: Path
    cluster_peer_id: str | None = None
    settings: dict[str, str] = field(default_factory=dict)  # more SCNODE_LIGHTNING_API_* values
    port: int = field(default_factory=free_port)
    tokens: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self, scope: str = "read") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}

    def client(self, scope: str = "read") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(scope), timeout=30)

    def write_config(self) -> Path:
        keys = {name: generate(scopes, name=f"test-{name}") for name, scopes in SCOPES.items()}
        self.tokens = {name: key.token for name, key in keys.items()}
        keys_file = self.workdir / "api-keys.json"
        ApiKeyStore([k.record for k in keys.values()]).save(keys_file)
        chain = self.node.chain
        env = {
            "RPC_SOCKET": str(self.node.rpc_path),
            "ZMQ_ENDPOINTS": json.dumps(sorted(set(self.node.zmq_endpoints.values()))),
            "BITCOIN_RPC_URL": f"http://127.0.0.1:{chain.port}",
            "BITCOIN_RPC_USER": chain.user,
            "BITCOIN_RPC_PASSWORD": chain.password,
            "API_KEYS_FILE": str(keys_file),
            "STATE_DB": str(self.workdir / "state.sqlite"),
            "POLL_SECONDS": "1",
            "SYNC_TOLERANCE_BLOCKS": "0",
            "ENVIRONMENT": "test",
            **({"CLUSTER_PEER_ID": self.cluster_peer_id} if self.cluster_peer_id else {}),
            **self.settings,
        }
        env_file = self.workdir / "lightning-api.env"
        env_file.write_text("".join(f"SCNODE_LIGHTNING_API_{k}={v}\n" for k, v in env.items()))
        env_file.chmod(0o600)
        return env_file

    def start(self) -> LightningApi:
        """Start the process; on a port another process took meanwhile, again on a new one."""
        for _ in range(3):
            if self._start_once():
                return self
            self.port = free_port()
        raise RuntimeError(f"Lightning API found no free port: {self.log()}")

    def _start_once(self) -> bool:
        env_file = self.workdir / "lightning-api.env"
        if not env_file.exists():
            self.write_config()
        log = open(self.workdir / "api.log", "ab")  # noqa: SIM115 - handed to the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scnode_lightning_api",
                "--env-file",
                str(env_file),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "address already in use" in self.log():
                    return False
                raise RuntimeError(f"Lightning API exited: {self.log()}")
            try:
                # only our process answers this (another server may hold a port we picked)
                reply = httpx.get(f"{self.url}/v1/node", headers=self.headers(), timeout=1)
                if reply.status_code == 200 and self.proc.poll() is None:
                    time.sleep(0.3)  # let the cl-zmq subscriptions join before tests publish
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"Lightning API did not start: {self.log()}")

    def log(self) -> str:
        path = self.workdir / "api.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @contextmanager
    def websocket(
        self, cursor: int | None = None, scope: str = "read"
    ) -> Iterator[ClientConnection]:
        query = "" if cursor is None else f"?cursor={cursor}"
        with connect(
            f"ws://127.0.0.1:{self.port}/v1/events/ws{query}",
            additional_headers=self.headers(scope),
            open_timeout=10,
        ) as ws:
            yield ws

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self.client() as client:
            events: list[dict[str, Any]] = client.get(
                "/v1/events/recent", params={"limit": 1000}
            ).json()["events"]
        return [e for e in events if kind is None or e["kind"] == kind]

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def next_event(ws: ClientConnection, kind: str, timeout: float = 15, **data: Any) -> dict[str, Any]:
    """The next event of ``kind`` whose data has the given values (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no {kind} event within {timeout} s")
        event: dict[str, Any] = json.loads(ws.recv(timeout=remaining))
        if event["kind"] == kind and all(event["data"].get(k) == v for k, v in data.items()):
            return event
