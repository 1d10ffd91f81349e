"""Pytest fixtures for the mining stand-ins: translator, simulated miners, cluster pool.

- `translator_factory(**options)` starts `python -m simnet.translator` on free loopback ports
  and returns a `TranslatorProcess` (SV1 port, log path, monitoring URL, restart/stop/SIGHUP).
- `translator`: one started with RUST_LOG=debug, fast jobs (2 s) and vardiff (3 s).
- `miners_factory(url, {"alice.rig1": "1T"})` starts `python -m simnet.miners` with its control
  API and returns a `MinerProcess`.
- `mining_stack(workers, **translator_options)`: a translator plus miners, waiting until every
  worker has an acknowledged share; returns `(translator, miners)`.
- `cluster_pool_factory(translator, payout_address, chain_control_url, reward_sats=...)` builds an
  in-process `ClusterPool` reading the translator's monitoring API (call `poll()`/`run_period()`).
Everything is stopped and its temporary files removed at the end of the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from simnet.cluster.pool import ClusterPool, PoolConfig, monitoring_fetcher
from simnet.ports import free_port as free_port
from simnet.translator.config import render_config

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
    """GET (or POST `body`) a JSON endpoint on loopback."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")  # noqa: S310
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read())


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PROJECT_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


@dataclass
class TranslatorProcess:
    """A running translator stand-in."""

    workdir: Path
    config_path: Path
    log_path: Path
    stdout_path: Path
    port: int
    monitoring_port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    user_identity: str = "sri_user"

    @property
    def url(self) -> str:
        return f"stratum+tcp://127.0.0.1:{self.port}"

    @property
    def monitoring_url(self) -> str:
        return f"http://127.0.0.1:{self.monitoring_port}"

    def start(self) -> None:
        out = open(self.stdout_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simnet.translator", "-c", str(self.config_path)],
            stdout=out,
            stderr=subprocess.DEVNULL,
            env=self.env,
            cwd=self.workdir,
        )
        out.close()
        wait_for(self._listening, what="translator monitoring API")

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"translator exited with {self.proc.returncode}")
        return http_json(f"{self.monitoring_url}/api/v1/health")["status"] == "ok"  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def sighup(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def channels(self) -> list[dict[str, Any]]:
        body = http_json(f"{self.monitoring_url}/api/v1/server/channels?limit=100")
        return body["extended_channels"]  # type: ignore[no-any-return]

    def sv1_clients(self) -> list[dict[str, Any]]:
        return http_json(f"{self.monitoring_url}/api/v1/sv1/clients?limit=100")["items"]  # type: ignore[no-any-return]

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8") if self.log_path.exists() else ""


@dataclass
class MinerProcess:
    """A `python -m simnet.miners` process with its control API."""

    control_port: int
    proc: subprocess.Popen[bytes]
    workers: dict[str, str] = field(default_factory=dict)

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    def status(self) -> dict[str, dict[str, Any]]:
        return {m["worker"]: m for m in http_json(f"{self.control_url}/miners")}

    def set_hashrate(self, worker: str, hashrate: str) -> None:
        http_json(f"{self.control_url}/miners/{worker}/hashrate", {"hashrate": hashrate})

    def stop_worker(self, worker: str) -> None:
        http_json(f"{self.control_url}/miners/{worker}/stop", {})

    def start_worker(self, worker: str) -> None:
        http_json(f"{self.control_url}/miners/{worker}/start", {})

    def add(self, worker: str, hashrate: str) -> None:
        http_json(f"{self.control_url}/miners", {"worker": worker, "hashrate": hashrate})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def translator_factory(tmp_path: Path) -> Iterator[Callable[..., TranslatorProcess]]:
    """Start translator stand-ins; keyword options go into the config and environment."""
    started: list[TranslatorProcess] = []

    def make(
        *,
        rust_log: str = "debug",
        user_identity: str = "sri_user",
        min_hashrate: float = 1e12,
        shares_per_minute: float = 240.0,
        enable_vardiff: bool = True,
        job_interval: float = 2.0,
        vardiff_interval: float = 3.0,
        aggregate_channels: bool = False,
        start: bool = True,
    ) -> TranslatorProcess:
        workdir = tmp_path / f"translator{len(started)}"
        workdir.mkdir()
        port, monitoring_port = free_port(), free_port()
        log_path = workdir / "log" / "stratum-bitcoin.log"
        config_path = workdir / "stratum-bitcoin.toml"
        config_path.write_text(
            render_config(
                upstream_port=free_port(),
                downstream_port=port,
                user_identity=user_identity,
                min_hashrate=min_hashrate,
                shares_per_minute=shares_per_minute,
                enable_vardiff=enable_vardiff,
                log_file=str(log_path),
                monitoring_address=f"127.0.0.1:{monitoring_port}",
                aggregate_channels=aggregate_channels,
            )
        )
        env = _env(
            {
                "RUST_LOG": rust_log,
                "SIMNET_JOB_INTERVAL_SECS": str(job_interval),
                "SIMNET_VARDIFF_INTERVAL_SECS": str(vardiff_interval),
            }
        )
        handle = TranslatorProcess(
            workdir=workdir,
            config_path=config_path,
            log_path=log_path,
            stdout_path=workdir / "stdout.log",
            port=port,
            monitoring_port=monitoring_port,
            env=env,
            user_identity=user_identity,
        )
        started.append(handle)
        if start:
            handle.start()
        return handle

    yield make
    for handle in started:
        handle.stop()


@pytest.fixture
def translator(translator_factory: Callable[..., TranslatorProcess]) -> TranslatorProcess:
    return translator_factory()


@pytest.fixture
def miners_factory() -> Iterator[Callable[[str, dict[str, str]], MinerProcess]]:
    """Start simulated miners: `miners_factory(translator.url, {"alice.rig1": "1T"})`."""
    started: list[MinerProcess] = []

    def make(url: str, workers: dict[str, str]) -> MinerProcess:
        control_port = free_port()
        args = [sys.executable, "-m", "simnet.miners", "--url", url]
        args += ["--control", f"127.0.0.1:{control_port}"]
        for worker, rate in workers.items():
            args += ["--miner", f"{worker}={rate}"]
        proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env({})
        )
        handle = MinerProcess(control_port, proc, dict(workers))
        started.append(handle)
        wait_for(lambda: bool(handle.status()) or not workers, what="miner control API")
        return handle

    yield make
    for handle in started:
        handle.stop()


@pytest.fixture
def mining_stack(
    translator_factory: Callable[..., TranslatorProcess],
    miners_factory: Callable[[str, dict[str, str]], MinerProcess],
) -> Callable[..., tuple[TranslatorProcess, MinerProcess]]:
    """`mining_stack({"alice.rig1": "2T"}, rust_log="debug")` → (translator, miners), mining."""

    def make(
        workers: dict[str, str], **translator_options: Any
    ) -> tuple[TranslatorProcess, MinerProcess]:
        translator = translator_factory(**translator_options)
        miners = miners_factory(translator.url, workers)

        def every_worker_acknowledged() -> bool:
            clients = {c["channel_id"]: c["sv1_username"] for c in translator.sv1_clients()}
            acked = {
                clients.get(c["channel_id"])
                for c in translator.channels()
                if c["shares_acknowledged"] > 0
            }
            return set(workers) <= acked

        wait_for(every_worker_acknowledged, timeout=60, what="every worker's first share")
        return translator, miners

    return make


@pytest.fixture
def cluster_pool_factory(tmp_path: Path) -> Callable[..., ClusterPool]:
    """Build a simulated cluster pool paying `payout_address` for `translator`'s work."""

    def make(
        translator: TranslatorProcess,
        payout_address: str,
        chain_control_url: str,
        *,
        reward_sats: int,
        other_work: int = 0,
        mode: str = "transaction",
        block_subsidy_sats: int = 1_500_000_000,
    ) -> ClusterPool:
        config = PoolConfig(
            identity=translator.user_identity,
            payout_address=payout_address,
            chain_control_url=chain_control_url,
            reward_sats=reward_sats,
            other_work=other_work,
            mode=mode,
            block_subsidy_sats=block_subsidy_sats,
        )
        return ClusterPool(
            config, monitoring_fetcher(translator.monitoring_url), tmp_path / "pool-state.json"
        )

    return make
