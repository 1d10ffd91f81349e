"""The processes behind the browser tests, started as an operator would: a simnet Bitcoin
regtest chain with its chain API, the exchange (deposit watcher inside), the simnet OIDC
provider (the BTCofAZ stand-in, on another loopback address so the sign-in redirect is a real
cross-site navigation) and the member dashboard."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from scnode_core.apikeys import ApiKeyStore, NewApiKey, generate
from simnet.pytest_chain import ChainNode, free_port
from simnet.pytest_lightning import ChainHandle, LightningNodeHandle, open_channel
from tests.integration.exchange_e2e.handle import Chain, ExchangeChainApi, ExchangeProcess
from tests.integration.lightning_api.handle import LightningApi

PROVIDER_HOST = "127.0.0.2"  # another site than the dashboard's 127.0.0.1
CONFIRMATIONS = 2
MAX_FAILURES = 3
APPROVAL_ABOVE = 500_000  # sats: larger withdrawals wait for the owner's approval
LN_INBOUND_MSAT = 2_000_000_000  # on the hub's side of the node's channel: the outside can pay


def wait_until(
    what: str,
    check: Callable[[], bool],
    logs: list[Path],
    timeout: float = 30.0,
    every: float = 0.1,
) -> None:
    """Poll ``check`` every ``every`` seconds; fail with the ends of ``logs`` when it does not
    come true in time."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tails = "".join(
                f"\n--- {p}:\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists()
            )
            raise AssertionError(f"{what}: not reached in {timeout}s{tails}")
        time.sleep(every)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@dataclass
class Service:
    """One child process with its log."""

    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_url: str, logs: list[Path], timeout: float = 90.0) -> None:
        """Start and wait until ``ready_url`` answers 200 (generous: on a loaded machine a
        Python app's imports alone take many seconds)."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            return _answers(ready_url)

        wait_until(f"{self.name} answering", up, [self.log, *logs], timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Stack:
    root: Path
    chain: Chain = field(init=False)
    exchange: ExchangeProcess = field(init=False)
    provider: Service = field(init=False)
    dashboard: Service = field(init=False)
    dashboard_url: str = ""
    provider_url: str = ""
    database: Path = field(init=False)
    passwords: dict[str, str] = field(default_factory=dict)
    member_ids: dict[str, int] = field(default_factory=dict)
    owner: str = ""  # a local owner account made with add-local-user --owner (password below)
    owner_password: str = ""
    components_file: Path = field(init=False)  # what the owner's components page asks
    # more SCNODE_DASHBOARD_* settings (e.g. STRATUM_APIS for the mining page)
    dashboard_env: dict[str, str] = field(default_factory=dict)
    # Lightning too (the exchange's LaaS): a simnet lightningd with a channel to the simulated
    # SC Cluster hub (on a minichain of their own) and a Lightning API in front of it
    lightning: bool = False
    ln_chain: ChainHandle | None = None
    ln_node: LightningNodeHandle | None = None
    ln_hub: LightningNodeHandle | None = None
    ln_api: LightningApi | None = None

    def start(self, members: list[str]) -> Stack:
        """Chain → chain API → exchange in one thread, the provider and the dashboard in
        another (the dashboard needs only the exchange's address and key to start)."""
        exchange_port, dash_port, provider_port = free_port(), free_port(), free_port()
        dashboard_key = generate({"dashboard"}, "dashboard")
        owner_key = generate({"owner"}, "dashboard-owner")
        self.components_file = self.root / "components.json"
        with ThreadPoolExecutor(3) as pool:
            ln = pool.submit(self._start_lightning) if self.lightning else None
            money = pool.submit(
                self._start_money, members, exchange_port, [dashboard_key, owner_key], ln
            )
            login = pool.submit(
                self._start_login, members, exchange_port, dash_port, provider_port,
                dashboard_key.token, owner_key.token,
            )  # fmt: skip
            money.result()
            login.result()
        # the chain API as the apps role lists it for the owner's components page
        assert self.chain.api is not None
        self.components_file.write_text(json.dumps([
            {"name": "Bitcoin chain API", "kind": "chain_api", "url": self.chain.api.url,
             "key": self.chain.api.tokens["read"]},
            {"name": "Disk", "kind": "disk", "path": str(self.root)},
        ]))  # fmt: skip
        return self

    def _start_lightning(self) -> dict[str, Any]:
        """Hub and node (channel node → hub, part of it shifted to the hub's side) and the
        Lightning API; the exchange's LIGHTNING setting for it."""
        base = self.root / "ln"  # short: the RPC socket path must fit a unix socket address
        base.mkdir()
        chain = self.ln_chain = ChainHandle(base)
        for alias in ("hub", "node"):
            (base / alias).mkdir()
        with ThreadPoolExecutor(2) as pool:
            hub = pool.submit(LightningNodeHandle, base / "hub", chain, alias="hub", role="hub",
                              zmq=False)  # fmt: skip
            node = pool.submit(LightningNodeHandle, base / "node", chain, alias="node")
            self.ln_hub, self.ln_node = hub.result(), node.result()
        open_channel(self.ln_node, self.ln_hub)
        self.ln_node.shift_channel_balance(LN_INBOUND_MSAT)
        (base / "api").mkdir()
        api = LightningApi(self.ln_node, base / "api", self.ln_hub.node_id)
        api.write_config()
        # the exchange's key: invoices for deposits, payments for members paying invoices
        exchange_key = generate({"read", "invoice", "pay"}, "exchange")
        keys_file = api.workdir / "api-keys.json"
        ApiKeyStore([*ApiKeyStore.load(keys_file).records, exchange_key.record]).save(keys_file)
        # started like the other services here (the handle's own start gives up after 30 s,
        # too short for a Python app's imports on a loaded machine)
        service = Service(
            "Lightning API",
            [sys.executable, "-m", "scnode_lightning_api", "--env-file",
             str(api.workdir / "lightning-api.env"), "--port", str(api.port),
             "--log-level", "warning"],
            api.workdir / "api.log",
        )  # fmt: skip
        self.ln_api = api
        service.start(f"{api.url}/healthz", [self.ln_node.log_path])
        api.proc = service.proc
        time.sleep(0.3)  # let the cl-zmq subscriptions join before anything is paid
        return {"api_url": api.url, "api_key": exchange_key.token, "pay_poll_seconds": 0.2}

    def _start_money(
        self,
        members: list[str],
        port: int,
        keys: list[NewApiKey],
        lightning: Future[dict[str, Any]] | None = None,
    ) -> None:
        """What Chain.start() and ExchangeProcess.start() do, with this suite's own (longer)
        start-up waits."""
        chain = self.chain = Chain("bitcoin", self.root / "bitcoin")
        (chain.root / "node").mkdir(parents=True)
        (chain.root / "api").mkdir()
        chain.node = ChainNode(chain.root / "node", "bitcoin", "regtest", None, {}, [])
        chain.node.start()
        chain.node.rpc("createwallet", "wallet")
        chain.node.rpc("createwallet", "outside")
        chain.node.mine(101)  # mature coins for the outside world (pays the deposits)
        api = chain.api = ExchangeChainApi(chain.node, chain.root / "api", "bit")
        api_service = Service(
            "chain API",
            [sys.executable, "-m", "scnode_chain_api", "--env-file", str(api.write_config()),
             "--port", str(api.port), "--log-level", "warning"],
            chain.root / "api" / "api.log",
        )  # fmt: skip
        api_service.start(f"{api.url}/healthz", [])
        api.proc = api_service.proc

        (self.root / "exchange").mkdir()
        self.exchange = ExchangeProcess(
            self.root / "exchange",
            f"sqlite:///{self.root / 'exchange' / 'exchange.sqlite3'}",
            {"CHAINS": {"bitcoin": {"asset": "SATS", "confirmations": CONFIRMATIONS,
                                    **chain.settings}},
             # regtest addresses (bcrt), every withdrawal below the approval threshold
             "WITHDRAWALS": {"bitcoin": {"hrp": "bcrt", "min_amount": 1_000, "flat_fee": 300,
                                         "confirmations": 1,
                                         "approval_threshold": APPROVAL_ABOVE}},
             "WITHDRAWAL_POLL_SECONDS": "0.2",
             **({"LIGHTNING": lightning.result()} if lightning is not None else {})},
        )  # fmt: skip
        self.exchange.port, self.exchange.url = port, f"http://127.0.0.1:{port}"
        keys_file = self.exchange.workdir / "owner-keys.json"
        ApiKeyStore([*ApiKeyStore.load(keys_file).records, *(k.record for k in keys)]).save(
            keys_file
        )
        exchange_service = Service(
            "exchange",
            [sys.executable, "-m", "scnode_exchange", "--env-file", str(self.exchange.env_file),
             "--port", str(port), "--log-level", "info"],
            self.exchange.log,
        )  # fmt: skip
        exchange_service.start(f"{self.exchange.url}/healthz", [api_service.log])
        self.exchange.proc = exchange_service.proc
        owner = httpx.Client(
            base_url=self.exchange.url, headers={"X-API-Key": self.exchange.owner_key}
        )
        for handle in members:
            reply = owner.post("/api/owner/members", json={"handle": handle, "reason": "member"})
            assert reply.status_code == 201, reply.text
            self.member_ids[handle] = int(reply.json()["id"])
        owner.close()

    def _start_login(
        self, members: list[str], exchange_port: int, dash_port: int, provider_port: int,
        dashboard_key: str, owner_key: str,
    ) -> None:  # fmt: skip
        self.dashboard_url = f"http://127.0.0.1:{dash_port}"
        self.provider_url = f"http://{PROVIDER_HOST}:{provider_port}/"
        client_secret = secrets.token_urlsafe(24)
        self.passwords = {handle: secrets.token_urlsafe(12) for handle in members}
        provider_config = self.root / "oidc.json"
        provider_config.write_text(json.dumps({
            "clients": [{"client_id": "scnode-dashboard", "secret": client_secret,
                         "redirect_uris": [f"{self.dashboard_url}/auth/oidc/callback"]}],
            "users": [{"login": h, "password": p} for h, p in self.passwords.items()],
        }))  # fmt: skip
        self.provider = Service(
            "oidc provider",
            [sys.executable, "-m", "simnet.oidc", "--host", PROVIDER_HOST,
             "--port", str(provider_port), "--config", str(provider_config)],
            self.root / "oidc.log",
        )  # fmt: skip
        self.provider.start(f"{self.provider_url}.well-known/openid-configuration", [])

        self.database = self.root / "dashboard" / "dashboard.sqlite3"
        env: dict[str, Any] = {
            "ENVIRONMENT": "test",
            "PUBLIC_URL": self.dashboard_url + "/",
            "DATABASE_PATH": str(self.database),
            "EXCHANGE_URL": f"http://127.0.0.1:{exchange_port}",
            "EXCHANGE_API_KEY": dashboard_key,
            "EXCHANGE_OWNER_API_KEY": owner_key,
            "COMPONENTS_FILE": str(self.components_file),
            "DEPOSIT_CHAINS": json.dumps(["bitcoin"]),
            "OIDC_DISCOVERY_URL": f"{self.provider_url}.well-known/openid-configuration",
            "OIDC_CLIENT_ID": "scnode-dashboard",
            "OIDC_CLIENT_SECRET": client_secret,
            "COOKIE_SECURE": "false",
            "MAX_FAILURES": str(MAX_FAILURES),
            "LOGINS_PER_MINUTE": "200",
            **self.dashboard_env,
        }
        env_file = self.root / "dashboard.env"
        env_file.write_text("".join(f"SCNODE_DASHBOARD_{k}='{v}'\n" for k, v in env.items()))
        env_file.chmod(0o600)
        if self.owner:  # as the technician does it: the CLI, password on stdin
            self.owner_password = secrets.token_urlsafe(16)
            subprocess.run(
                [sys.executable, "-m", "scnode_dashboard", "--env-file", str(env_file),
                 "add-local-user", "--owner", self.owner],
                input=f"{self.owner_password}\n".encode(), check=True, capture_output=True,
            )  # fmt: skip
        self.dashboard = Service(
            "dashboard",
            [sys.executable, "-m", "scnode_dashboard", "--env-file", str(env_file),
             "--port", str(dash_port), "--log-level", "info"],
            self.root / "dashboard.log",
        )  # fmt: skip
        self.dashboard.start(f"{self.dashboard_url}/healthz", [])

    def logs(self) -> list[Path]:
        return [self.dashboard.log, self.exchange.log, self.provider.log]

    def member_token(self, handle: str) -> str:
        """A member token from the exchange's lab login (test set-up outside the browser)."""
        token = httpx.post(
            f"{self.exchange.url}/api/auth/login", json={"username": handle}, timeout=10
        ).json()["token"]
        return str(token)

    def stop(self) -> None:
        for service in ("dashboard", "provider"):
            handle: Service | None = getattr(self, service, None)
            if handle is not None:
                handle.stop()
        exchange: ExchangeProcess | None = getattr(self, "exchange", None)
        if exchange is not None:
            exchange.stop()
        chain: Chain | None = getattr(self, "chain", None)
        if chain is not None:
            chain.stop()
        if self.ln_api is not None:
            self.ln_api.stop()
        for node in (self.ln_node, self.ln_hub):
            if node is not None:
                node.stop()
        if self.ln_chain is not None:
            self.ln_chain.stop()
