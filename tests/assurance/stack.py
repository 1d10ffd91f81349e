"""Every API of the node as real processes on loopback, started as the apps role starts them
(env files, key files), in front of the simnet stand-ins: a Bitcoin regtest chain and its chain
API, a simnet lightningd with a channel to the simulated SC Cluster hub and the Lightning API,
the stratum stats API following a translator log, and the exchange wired to all three (deposits,
withdrawals, Lightning deposits, mining payouts) in lab mode (members log in by handle).

Every secret the run creates is kept in ``secrets`` so the assurance tests can look for them in
the logs afterwards. Used by the fuzzing and access-matrix tests and by benchmarks/fuzz_apis.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from scnode_core.apikeys import ApiKeyStore, NewApiKey, generate
from scnode_exchange.api.auth import SessionTokens
from simnet.pytest_chain import ChainNode
from simnet.pytest_lightning import ChainHandle, LightningNodeHandle, open_channel
from tests.assurance.logscan import basic_auth_shapes
from tests.integration.exchange_e2e.handle import ExchangeChainApi, ExchangeProcess
from tests.integration.lightning_api.handle import LightningApi
from tests.integration.stratum.stratum_handle import StratumApi

MEMBERS = ("alice", "bob")
PYTHON = sys.executable
START = 120.0  # seconds an app may take to answer (imports alone are slow on a loaded machine)
INBOUND_MSAT = 2_000_000_000


@dataclass
class Stack:
    root: Path
    node: ChainNode = field(init=False)
    chain_api: ExchangeChainApi = field(init=False)
    pair: tuple[LightningNodeHandle, LightningNodeHandle] | None = None
    ln_chain: ChainHandle | None = None
    ln_base: Path | None = None
    ln_handles: list[LightningNodeHandle] = field(default_factory=list)
    lightning_api: LightningApi | None = None
    stratum_api: StratumApi = field(init=False)
    exchange: ExchangeProcess = field(init=False)
    member_ids: dict[str, int] = field(default_factory=dict)
    member_tokens: dict[str, str] = field(default_factory=dict)
    # keys the exchange's owner-key file holds besides the owner key: name → token
    exchange_keys: dict[str, str] = field(default_factory=dict)
    revoked_owner_key: str = ""
    api_tokens: dict[str, str] = field(default_factory=dict)  # alice's member API tokens
    expired_session: str = ""
    secrets: set[str] = field(default_factory=set)

    # ------------------------------------------------------------------ start / stop
    def start(self, lightning: bool = True) -> Stack:
        try:
            with ThreadPoolExecutor(3) as pool:
                started = [pool.submit(self._start_chain), pool.submit(self._start_stratum)]
                if lightning:
                    started.append(pool.submit(self._start_lightning))
                for future in started:
                    future.result()
            self._start_exchange()
            self._collect_secrets()
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _spawn(
        name: str, argv: list[str], log: Path, ready: Callable[[], bool], timeout: float = START
    ) -> subprocess.Popen[bytes]:
        """Start one app as its unit does and wait (generously: the CI machine is shared) until
        ``ready`` is true; fail with the end of its log if it exits or does not get there."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [PYTHON, "-m", *argv], stdout=out, stderr=subprocess.STDOUT,
                env={**python_env(), "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                if ready():
                    return proc
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{name} not ready in {timeout}s:\n{log.read_text()[-3000:]}")

    def _start_chain(self) -> None:
        (self.root / "node").mkdir(parents=True)
        (self.root / "chain-api").mkdir()
        self.node = ChainNode(self.root / "node", "bitcoin", "regtest", None, {}, [])
        self.node.start(timeout=START)
        self.node.rpc("createwallet", "wallet")
        self.node.rpc("createwallet", "outside")
        self.node.mine(101)
        api = self.chain_api = ExchangeChainApi(self.node, self.root / "chain-api", "btc")
        env_file = api.write_config()
        argv = ["scnode_chain_api", "--env-file", str(env_file), "--port", str(api.port),
                "--log-level", "warning"]  # fmt: skip
        api.proc = self._spawn(
            "chain API", argv, api.workdir / "api.log", lambda: _ok(f"{api.url}/healthz")
        )
        time.sleep(0.3)  # let the ZMQ subscriptions join

    def _start_lightning(self) -> None:
        # a short base: the RPC socket path must fit a unix socket address (108 bytes)
        base = self.ln_base = Path(tempfile.mkdtemp(prefix="assur-ln-", dir="/tmp"))
        self.ln_chain = ChainHandle(base)
        handles = self.ln_handles
        for alias in ("hub", "node"):
            (base / alias).mkdir()
            zmq = alias == "node"
            handles.append(LightningNodeHandle(base / alias, self.ln_chain, alias=alias,
                                               role=alias, zmq=zmq))  # fmt: skip
        hub, node = handles
        self.pair = (node, hub)
        open_channel(node, hub)
        node.shift_channel_balance(INBOUND_MSAT)
        workdir = self.root / "lightning-api"
        workdir.mkdir()
        ln = self.lightning_api = LightningApi(node, workdir, hub.node_id,
                                               settings={"UNSENT_GRACE_SECONDS": "1"})  # fmt: skip
        env_file = ln.write_config()
        every = generate({"read", "invoice", "pay"}, name="test-all")
        keys_file = workdir / "api-keys.json"
        ApiKeyStore([*ApiKeyStore.load(keys_file).records, every.record]).save(keys_file)
        ln.tokens["all"] = every.token
        argv = ["scnode_lightning_api", "--env-file", str(env_file), "--port", str(ln.port),
                "--log-level", "warning"]  # fmt: skip
        ln.proc = self._spawn(
            "Lightning API", argv, workdir / "api.log",
            lambda: _ok(f"{ln.url}/v1/node", ln.headers()),
        )  # fmt: skip

    def _start_stratum(self) -> None:
        workdir = self.root / "stratum-api"
        workdir.mkdir()
        log = workdir / "translator.log"
        log.write_text("")
        self.stratum_api = StratumApi(workdir, log)
        self.stratum_api.start(timeout=START)

    def _start_exchange(self) -> None:
        workdir = self.root / "exchange"
        workdir.mkdir()
        settings: dict[str, object] = {
            "CHAINS": {"bitcoin": {"asset": "SATS", "confirmations": 2,
                                   "api_url": self.chain_api.url,
                                   "api_key": self.chain_api.tokens["exchange"]}},
            "WITHDRAWALS": {"bitcoin": {"hrp": "bcrt", "min_amount": 1_000, "flat_fee": 300,
                                        "confirmations": 1}},
            "WITHDRAWAL_POLL_SECONDS": "0.5",
            "MINING_POOLS": {"btc": {"chain_api_url": self.chain_api.url,
                                     "chain_api_key": self.chain_api.tokens["exchange"],
                                     "stats_api_url": self.stratum_api.url,
                                     "stats_api_key": self.stratum_api.token,
                                     "first_window_start": int(time.time()) - 3600}},
            "MINING_INTERVAL": "5",
        }  # fmt: skip
        if self.lightning_api is not None:
            settings["LIGHTNING"] = {
                "api_url": self.lightning_api.url,
                "api_key": self.lightning_api.tokens["invoice"],
            }
        self.exchange = ExchangeProcess(
            workdir, f"sqlite:///{workdir / 'exchange.sqlite3'}", settings
        )
        # besides the owner key: a metrics-only key, a dashboard key and a revoked owner key
        keys_file = workdir / "owner-keys.json"
        extra: dict[str, NewApiKey] = {
            "metrics": generate({"metrics"}, "metrics"),
            "dashboard": generate({"dashboard"}, "dashboard"),
        }
        revoked = generate({"owner"}, "old-operator")
        records = [*ApiKeyStore.load(keys_file).records, *(k.record for k in extra.values())]
        # revoked as rotation revokes: its grace period (not_after) is over
        records.append(replace(revoked.record, not_after=datetime.now(UTC) - timedelta(hours=1)))
        ApiKeyStore(records).save(keys_file)
        self.exchange_keys = {name: key.token for name, key in extra.items()}
        self.revoked_owner_key = revoked.token
        ex = self.exchange
        argv = ["scnode_exchange", "--env-file", str(ex.env_file), "--port", str(ex.port),
                "--log-level", "info"]  # fmt: skip
        ex.proc = self._spawn("exchange", argv, ex.log, lambda: _ok(f"{ex.url}/healthz"))
        owner = httpx.Client(base_url=self.exchange.url, headers=self.owner_headers(), timeout=30)
        for handle in MEMBERS:
            reply = owner.post("/api/owner/members", json={"handle": handle, "reason": "member"})
            assert reply.status_code == 201, reply.text
            self.member_ids[handle] = int(reply.json()["id"])
        owner.close()
        for handle in MEMBERS:
            reply = httpx.post(
                f"{self.exchange.url}/api/auth/login", json={"username": handle}, timeout=10
            )
            assert reply.status_code == 200, reply.text
            self.member_tokens[handle] = str(reply.json()["token"])
        # alice's API tokens (the mobile app's kind): every scope, read only, and a revoked one
        session = httpx.Client(
            base_url=self.exchange.url, headers=self.member_headers("alice"), timeout=30
        )
        for name, scopes in (("all", ["read", "trade", "withdraw"]), ("read", ["read"]),
                             ("revoked", ["read", "trade", "withdraw"])):  # fmt: skip
            reply = session.post("/api/tokens", json={"name": name, "scopes": scopes})
            assert reply.status_code == 201, reply.text
            self.api_tokens[name] = str(reply.json()["token"])
            if name == "revoked":
                gone = session.delete(f"/api/tokens/{reply.json()['id']}")
                assert gone.status_code == 204, gone.text
        session.close()
        # a session token of alice's, signed by this node, that expired an hour ago
        secret = (self.exchange.workdir / "session.secret").read_bytes().strip()
        self.expired_session = SessionTokens(secret, 3600).issue(
            self.member_ids["alice"], now=time.time() - 7200
        )

    def _collect_secrets(self) -> None:
        self.secrets |= {self.exchange.owner_key, self.revoked_owner_key}
        self.secrets |= set(self.exchange_keys.values()) | set(self.member_tokens.values())
        self.secrets |= set(self.api_tokens.values()) | {self.expired_session}
        self.secrets |= set(self.chain_api.tokens.values()) | {self.node.password}
        self.secrets |= basic_auth_shapes(self.node.user, self.node.password)
        self.secrets.add(self.stratum_api.token)
        self.secrets.add((self.exchange.workdir / "session.secret").read_text().strip())
        if self.lightning_api is not None:
            self.secrets |= set(self.lightning_api.tokens.values())
            chain = self.lightning_api.node.chain
            self.secrets.add(chain.password)
            self.secrets |= basic_auth_shapes(chain.user, chain.password)

    def owner_headers(self) -> dict[str, str]:
        return {"X-API-Key": self.exchange.owner_key}

    def member_headers(self, handle: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.member_tokens[handle]}"}

    def logs(self) -> list[Path]:
        """Every log file the stack's processes wrote."""
        found = [p for p in self.root.rglob("*") if p.is_file() and p.suffix in {".log", ".out"}]
        return sorted(found)

    def stop(self) -> None:
        # what started (a failed start leaves some attributes unset)
        for name, method in (
            ("exchange", "stop"),
            ("lightning_api", "stop"),
            ("stratum_api", "stop"),
            ("chain_api", "stop"),
            ("node", "stop"),
            ("node", "kill"),
        ):
            handle = getattr(self, name, None)
            if handle is None:
                continue
            try:
                getattr(handle, method)()
            except Exception:  # noqa: S112 - stop what can be stopped; the rest is torn down below
                continue
        for handle in self.ln_handles:
            handle.stop()
        if self.ln_base is not None:
            # a lightningd whose start timed out has no handle: end it by its pid, found by
            # the run's own directory in its command line
            _kill_children_under(self.ln_base)
        if self.ln_chain is not None:
            self.ln_chain.stop()
        if self.ln_base is not None:
            shutil.rmtree(self.ln_base, ignore_errors=True)


def _kill_children_under(base: Path) -> None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(base) in cmdline and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)


def _ok(url: str, headers: dict[str, str] | None = None) -> bool:
    return httpx.get(url, headers=headers, timeout=2).status_code == 200


def python_env() -> dict[str, str]:
    """The environment for child processes (schemathesis' CLI) with the project importable."""
    root = Path(__file__).resolve().parents[2]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "apps")])}


def run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=python_env(), check=False
    )
