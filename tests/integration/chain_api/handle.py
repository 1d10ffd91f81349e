"""Handle on a chain API process in front of a chain daemon (the simnet stand-in here; the
same handle works for a real daemon), with keys of each scope generated at test time. Used by
the tests and by benchmarks/chain_api.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from scnode_core.apikeys import ApiKeyStore, generate
from simnet.pytest_chain import ChainNode, free_port

SCOPES = {"read": {"read"}, "deposit": {"read", "deposit"}, "send": {"read", "send"}}


@dataclass
class ChainApi:
    node: ChainNode
    workdir: Path
    prefix: str
    port: int = field(default_factory=free_port)
    tokens: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    settings: dict[str, str] = field(default_factory=dict)  # more SCNODE_CHAIN_API_* values

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
        env = {
            "CHAIN": self.node.coin,
            "PATH_PREFIX": self.prefix,
            "RPC_URL": f"http://127.0.0.1:{self.node.rpc_port}",
            "RPC_USER": self.node.user,
            "RPC_PASSWORD": self.node.password,
            "WALLET": "wallet",
            "ZMQ_RAWTX": self.node.zmq["rawtx"],
            "ZMQ_HASHBLOCK": self.node.zmq["hashblock"],
            "ZMQ_SEQUENCE": self.node.zmq["sequence"],
            "API_KEYS_FILE": str(keys_file),
            "STATE_DB": str(self.workdir / "state.sqlite"),
            "TRACK_CONFIRMATIONS": "6",
            **self.settings,
        }
        env_file = self.workdir / "chain-api.env"
        env_file.write_text("".join(f"SCNODE_CHAIN_API_{k}={v}\n" for k, v in env.items()))
        env_file.chmod(0o600)
        return env_file

    def start(self) -> ChainApi:
        """Start the API and wait for /healthz. Its port is free when picked, but another test
        run on the machine (the same pytest-xdist worker's port block, simnet/ports.py) can
        bind it first: then it starts again on a new port (twice at most)."""
        for attempt in range(3):
            try:
                return self._start()
            except RuntimeError as err:
                if attempt == 2 or "address already in use" not in str(err):
                    raise
                log = self.workdir / "api.log"
                log.rename(log.with_name(f"api.log.port-taken-{attempt}"))
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start(self) -> ChainApi:
        env_file = self.workdir / "chain-api.env"
        if not env_file.exists():
            self.write_config()
        log = open(self.workdir / "api.log", "ab")  # noqa: SIM115 - handed to the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scnode_chain_api",
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
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chain API exited: {self.log()}")
            try:
                httpx.get(f"{self.url}/healthz", timeout=1)
                time.sleep(0.3)  # let the ZMQ subscriptions join before tests publish
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"chain API did not start: {self.log()}")

    def log(self) -> str:
        path = self.workdir / "api.log"
        return path.read_text(errors="replace") if path.exists() else ""

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
