"""Mixed load against the exchange as real processes (shared by benchmarks/soak_exchange.py and
tests/assurance/test_faults.py): a simnet Bitcoin and a simnet AZCoin regtest stand-in, each
with its chain API process, and the exchange app process on SQLite. Many members place and
cancel orders, withdraw sats and look at their balances over HTTP while the simulated outside
world pays deposits and blocks are mined; the ledger audit runs every few seconds.

``audit`` compares the chains' wallet histories with the ledger at the end: every confirmed
deposit credited exactly once, every withdrawal paid at most once (exactly once if the exchange
says it was sent), nothing paid that the exchange does not know of.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from scnode_exchange.db import make_engine, make_sessionmaker
from scnode_exchange.deposits.models import Deposit
from scnode_exchange.ledger import JournalEntry, verify
from scnode_exchange.withdrawals.models import Withdrawal
from simnet.pytest_chain import ChainNode, ChainRPCError
from tests.integration.chain_api.handle import ChainApi
from tests.integration.exchange_e2e.handle import Chain, ExchangeChainApi, ExchangeProcess

LOT = 1_000_000
N = 2  # deposit confirmations
BTC_FEE = 300
COINS = {"bitcoin": "SATS", "azcoin": "AZC"}
FUND = {"bitcoin": 5_000_000, "azcoin": 500_000_000}  # each member's first deposit
SETTLED = {"confirmed", "failed", "cancelled", "rejected"}
RPC_TIMEOUT = 3  # the chain APIs' timeout for a daemon's answer, seconds
START = 120.0  # seconds an app may take to answer (imports alone are slow on a loaded machine)
KINDS = ("order", "cancel", "withdraw", "balances", "deposit")
# what a fault can SIGKILL: the exchange, each chain API and each chain stand-in daemon
TARGETS = ("exchange", "api:bitcoin", "api:azcoin", "node:bitcoin", "node:azcoin")
PROBE_TIMEOUT = 180.0  # seconds a deposit paid after a restart may take to be credited


@dataclass
class Fault:
    """One kill -9 and how the system came back: ``restart_s`` from the kill until the process
    answers again (its health check; for a stand-in, RPC out of warm-up), ``recovered_s`` from
    the kill until a deposit paid after the restart is credited by the exchange (the whole
    chain stand-in → chain API → exchange path works again; None if the run ended first)."""

    target: str
    at_s: float  # since the load began
    restart_s: float = 0.0
    recovered_s: float | None = None
    error: str | None = None  # the probe deposit was not credited in PROBE_TIMEOUT s


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    unavailable: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    audits: int = 0
    audit_problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float, status: int | None) -> None:
        with self.lock:
            if status is None:
                self.unavailable[kind] += 1
                return
            self.latencies[kind].append(seconds)
            self.statuses[kind][status] += 1

    def server_errors(self, allow: tuple[int, ...] = ()) -> dict[str, int]:
        """5xx answers per request kind, but those in ``allow``."""
        with self.lock:
            counts = {
                kind: sum(n for code, n in codes.items() if code >= 500 and code not in allow)
                for kind, codes in self.statuses.items()
            }
        return {kind: n for kind, n in counts.items() if n}

    def status_count(self, status: int) -> int:
        with self.lock:
            return sum(codes.get(status, 0) for codes in self.statuses.values())


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class World:
    root: Path
    members: int
    chains: dict[str, Chain] = field(default_factory=dict)
    exchange: ExchangeProcess = field(init=False)
    tokens: list[str] = field(default_factory=list)
    addresses: dict[tuple[int, str], str] = field(default_factory=dict)
    outside: dict[str, list[str]] = field(default_factory=dict)
    payments: list[tuple[str, str, int]] = field(default_factory=list)  # chain, txid, amount
    stats: Stats = field(default_factory=Stats)
    db_dir: Path | None = None  # the exchange database's directory (default: its workdir)
    withdraw_share: float = 0.10  # of the load's requests (orders 40 %, cancels 20 %)
    # the chain APIs' timeout for a daemon's answer (None: the app's default, 30 s)
    rpc_timeout: int | None = RPC_TIMEOUT

    # ------------------------------------------------------------------ start / stop
    def start(self) -> World:
        self.chains = {coin: Chain(coin, self.root / coin) for coin in COINS}
        with ThreadPoolExecutor(2) as pool:
            made = self.chains.values()
            for started in [pool.submit(start_chain, c, self.rpc_timeout) for c in made]:
                started.result()
        (self.root / "exchange").mkdir()
        db_dir = self.db_dir or self.root / "exchange"
        chains = {
            coin: {"asset": asset, "confirmations": N, **self.chains[coin].settings}
            for coin, asset in COINS.items()
        }
        self.exchange = ExchangeProcess(
            self.root / "exchange",
            f"sqlite:///{db_dir / 'exchange.sqlite3'}",
            {
                "MARKETS": [
                    {"symbol": "AZC/SATS", "base": "AZC", "quote": "SATS", "lot_size": LOT,
                     "tick": 10, "maker_fee_bps": 10, "taker_fee_bps": 20}
                ],
                "CHAINS": chains,
                "WITHDRAWALS": {"bitcoin": {"hrp": "bcrt", "min_amount": 1_000,
                                            "flat_fee": BTC_FEE, "confirmations": 1}},
                "WITHDRAWAL_APPROVAL_THRESHOLD": str(10**12),
                "WITHDRAWAL_POLL_SECONDS": "0.2",
                # every member logs in from 127.0.0.1 at the start (the login limit is per
                # address, 10 a minute by default; tests/assurance/test_rate_limits.py has it)
                "LOGINS_PER_MINUTE": str(max(10, 2 * self.members)),
            },
        )  # fmt: skip
        self.exchange.other_logs = [c.root / "api" / "api.log" for c in self.chains.values()]
        start_exchange(self.exchange)
        owner = httpx.Client(
            base_url=self.exchange.url, headers={"X-API-Key": self.exchange.owner_key}, timeout=30
        )
        for i in range(self.members):
            reply = owner.post("/api/owner/members", json={"handle": f"m{i}", "reason": "load"})
            assert reply.status_code == 201, reply.text
            login = httpx.post(
                f"{self.exchange.url}/api/auth/login", json={"username": f"m{i}"}, timeout=30
            )
            assert login.status_code == 200, login.text
            self.tokens.append(str(login.json()["token"]))
        owner.close()
        for coin, chain in self.chains.items():
            self.outside[coin] = [
                str(chain.node.rpc("getnewaddress", wallet="outside")) for _ in range(8)
            ]
        for i in range(self.members):
            with self.client(i) as client:
                for coin in COINS:
                    got = client.get("/v1/deposits/address", params={"chain": coin})
                    assert got.status_code == 200, got.text
                    self.addresses[i, coin] = str(got.json()["address"])
        return self

    def stop(self) -> None:
        exchange: ExchangeProcess | None = getattr(self, "exchange", None)
        if exchange is not None:
            exchange.stop()
        for chain in self.chains.values():
            chain.stop()

    def client(self, member: int, timeout: float = 15) -> httpx.Client:
        return httpx.Client(
            base_url=self.exchange.url,
            headers={"Authorization": f"Bearer {self.tokens[member]}"},
            timeout=timeout,
        )

    @property
    def database_url(self) -> str:
        return self.exchange.database_url

    # ------------------------------------------------------------------ money in
    def pay(self, member: int, coin: str, amount: int) -> None:
        start = time.monotonic()
        txid = self.chains[coin].node.pay(self.addresses[member, coin], amount)
        self.stats.record("deposit", time.monotonic() - start, 200)
        with self.stats.lock:
            self.payments.append((coin, txid, amount))

    def fund_everyone(self, timeout: float = 120) -> None:
        """Every member's first deposit on both chains, mined to N and credited."""
        for i in range(self.members):
            for coin, amount in FUND.items():
                self.pay(i, coin, amount)
        self.mine(N)
        self.wait_settled(timeout)

    def mine(self, blocks: int = 1) -> None:
        for chain in self.chains.values():
            chain.node.mine(blocks)

    # ------------------------------------------------------------------ load
    def run_load(
        self,
        seconds: float,
        workers: int,
        audit_every: float = 5.0,
        block_every: float = 1.0,
        seed: int | None = None,
        during: Callable[[threading.Event], None] | None = None,
    ) -> float:
        """The mixed load for ``seconds`` with ``workers`` threads (members shared among them),
        a block on each chain every ``block_every`` s and the ledger audit every
        ``audit_every`` s; ``during`` runs in its own thread (fault injection) until the end.
        Returns the wall time."""
        stop = threading.Event()
        rng = random.Random(seed)
        seeds = [rng.randrange(1 << 30) for _ in range(workers)]
        threads = [
            threading.Thread(target=self._worker, args=(w, workers, seeds[w], stop), daemon=True)
            for w in range(workers)
        ]
        threads.append(threading.Thread(target=self._miner, args=(block_every, stop), daemon=True))
        threads.append(
            threading.Thread(target=self._auditor, args=(audit_every, stop), daemon=True)
        )
        if during is not None:
            threads.append(threading.Thread(target=during, args=(stop,), daemon=True))
        start = time.monotonic()
        for t in threads:
            t.start()
        stop.wait(seconds)
        stop.set()
        for t in threads:
            t.join(120)
        return time.monotonic() - start

    def _call(self, client: httpx.Client, kind: str, method: str, url: str, **kw: Any) -> Any:
        start = time.monotonic()
        try:
            reply = client.request(method, url, **kw)
        except httpx.TransportError:
            self.stats.record(kind, time.monotonic() - start, None)
            return None
        self.stats.record(kind, time.monotonic() - start, reply.status_code)
        return reply

    def _worker(self, index: int, workers: int, seed: int, stop: threading.Event) -> None:
        rng = random.Random(seed)
        mine = list(range(index, self.members, workers))
        clients = {m: self.client(m) for m in mine}
        open_orders: dict[int, list[int]] = {m: [] for m in mine}
        count = 0
        try:
            while not stop.is_set():
                m = rng.choice(mine)
                client = clients[m]
                roll = rng.random()
                count += 1
                if roll < 0.40:
                    side = rng.choice(("buy", "sell"))
                    body = {"market": "AZC/SATS", "side": side, "type": "limit",
                            "price": rng.randrange(950, 1060, 10),
                            "quantity": rng.randrange(1, 4), "time_in_force": "gtc"}  # fmt: skip
                    reply = self._call(client, "order", "POST", "/api/orders", json=body)
                    placed = reply is not None and reply.status_code == 201
                    if placed and reply.json()["status"] in ("open", "partially_filled"):
                        open_orders[m].append(int(reply.json()["id"]))
                elif roll < 0.60:
                    if open_orders[m]:
                        oid = open_orders[m].pop(rng.randrange(len(open_orders[m])))
                        self._call(client, "cancel", "DELETE", f"/api/orders/{oid}")
                elif roll < 0.60 + self.withdraw_share:
                    body = {"chain": "bitcoin", "address": rng.choice(self.outside["bitcoin"]),
                            "amount": rng.randrange(2_000, 20_000),
                            "idempotency_key": f"w{index}-{seed}-{count}"}  # fmt: skip
                    reply = self._call(client, "withdraw", "POST", "/v1/withdrawals", json=body)
                    retries = 0
                    while reply is None and retries < 20 and not stop.is_set():
                        time.sleep(0.5)  # unanswered: the same key again (no double send)
                        reply = self._call(client, "withdraw", "POST", "/v1/withdrawals", json=body)
                        retries += 1
                elif roll < 0.65 + self.withdraw_share:
                    coin = rng.choice(tuple(COINS))
                    try:
                        self.pay(m, coin, FUND[coin] // rng.randrange(5, 50))
                    except (OSError, ChainRPCError):
                        self.stats.record("deposit", 0.0, None)
                else:
                    self._call(client, "balances", "GET", "/api/balances")
                if self._down():
                    time.sleep(0.2)
        finally:
            for c in clients.values():
                c.close()

    def _down(self) -> bool:
        proc = self.exchange.proc
        return proc is None or proc.poll() is not None

    def _miner(self, every: float, stop: threading.Event) -> None:
        while not stop.wait(every):
            with contextlib.suppress(OSError, ChainRPCError):  # a stand-in being restarted
                self.mine(1)

    def _auditor(self, every: float, stop: threading.Event) -> None:
        while not stop.wait(every):
            self.check_ledger()

    def check_ledger(self) -> None:
        engine = make_engine(self.database_url)
        try:
            with make_sessionmaker(engine)() as session:
                report = verify(session)
        finally:
            engine.dispose()
        with self.stats.lock:
            self.stats.audits += 1
            self.stats.audit_problems.extend(report.problems)

    # ------------------------------------------------------------------ faults
    def kill9(self, target: str, pause: float = 0.0) -> float:
        """SIGKILL one process of ``TARGETS`` and, after ``pause`` s, start it again as systemd
        would (Restart=always): the apps on their env files, a chain stand-in on its own datadir
        and ports, so its chain and wallets persist as a real bitcoind's do. Returns the seconds
        from the kill until it answers again."""
        kind, _, coin = target.partition(":")
        began = time.monotonic()
        if kind == "exchange":
            proc = self.exchange.proc
            assert proc is not None
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL
            time.sleep(pause)
            start_exchange(self.exchange)
        elif kind == "api":
            api = self.chains[coin].api
            assert api is not None and api.proc is not None
            api.proc.send_signal(signal.SIGKILL)
            assert api.proc.wait(10) == -signal.SIGKILL
            time.sleep(pause)
            start_chain_api(api)
        elif kind == "node":
            node = self.chains[coin].node
            assert node.proc is not None and node.proc.poll() is None
            node.proc.send_signal(signal.SIGKILL)
            assert node.proc.wait(10) == -signal.SIGKILL
            node.kill()  # drops the handle's RPC connection
            time.sleep(pause)
            node.start(timeout=START)
            wait_rpc_ready(node, START)
        else:
            raise ValueError(f"unknown fault target {target!r}")
        return time.monotonic() - began

    def probe(self, coin: str, member: int, stop: threading.Event | None = None) -> float | None:
        """Pay a deposit to ``member`` on ``coin`` and wait (blocks come from the load's miner,
        or are mined here without a load) until the exchange credits it: seconds, or None if
        ``stop`` is set first. Raises if it is not credited in ``PROBE_TIMEOUT`` s."""
        began = time.monotonic()
        txid = self.chains[coin].node.pay(self.addresses[member, coin], FUND[coin] // 100)
        with self.stats.lock:
            self.payments.append((coin, txid, FUND[coin] // 100))
        while time.monotonic() - began < PROBE_TIMEOUT:
            if stop is None:
                with contextlib.suppress(OSError, ChainRPCError):
                    self.chains[coin].node.mine(1)
            if self._credited(coin, txid):
                return time.monotonic() - began
            if stop is not None and stop.wait(0.5):
                return None
            if stop is None:
                time.sleep(0.5)
        raise AssertionError(f"probe deposit {coin} {txid} not credited in {PROBE_TIMEOUT}s")

    def _credited(self, coin: str, txid: str) -> bool:
        engine = make_engine(self.database_url)
        try:
            with make_sessionmaker(engine)() as session:
                found = session.scalars(
                    select(Deposit.state).where(Deposit.chain == coin, Deposit.txid == txid)
                ).first()
        finally:
            engine.dispose()
        return found == "credited"

    def fault_injector(
        self,
        rng: random.Random,
        faults: list[Fault],
        every: tuple[float, float],
        plan: list[str] | None = None,
    ) -> Callable[[threading.Event], None]:
        """A ``run_load(during=...)`` that, after a random wait in ``every`` (seconds), kills
        the next target and restarts it, then probes recovery with a deposit on the target's
        chain; ``plan`` (default: every target in a random order, round after round) until the
        load ends. Appends to ``faults`` as it goes."""

        def inject(stop: threading.Event) -> None:
            start = time.monotonic()
            queue = list(plan) if plan is not None else []
            while not stop.is_set():
                if not queue:
                    if plan is not None:
                        return
                    queue = rng.sample(TARGETS, len(TARGETS))
                target = queue.pop(0)
                if stop.wait(rng.uniform(*every)):
                    return
                fault = Fault(target, round(time.monotonic() - start, 1))
                fault.restart_s = round(self.kill9(target, pause=rng.uniform(0.0, 2.0)), 1)
                faults.append(fault)
                coin = target.partition(":")[2] or "bitcoin"
                member = rng.randrange(self.members)
                try:
                    recovered = self.probe(coin, member, stop)
                except AssertionError as err:  # slow, not necessarily lost: the end settles
                    fault.error = str(err)
                    continue
                if recovered is not None:
                    fault.recovered_s = round(time.monotonic() - start - fault.at_s, 1)

        return inject

    # ------------------------------------------------------------------ the end
    def wait_settled(self, timeout: float = 120, idle: float | None = None) -> None:
        """Mine until every payment is credited and every withdrawal is settled: fail after
        ``timeout`` s, or (with ``idle``) once ``idle`` s pass without anything settling."""
        deadline = time.monotonic() + timeout
        last: list[str] = [""]
        progress = time.monotonic()
        while True:
            # then the chains: a payment whose answer a stand-in's kill cut off is not in
            # ``payments``, but on the chain all the same
            pending = self.unsettled() or self.uncredited_on_chain()
            if not pending:
                return
            if pending != last:  # progress: something settled or moved on (sending → sent)
                last, progress = pending, time.monotonic()
            stuck = idle is not None and time.monotonic() - progress > idle
            if stuck or time.monotonic() > deadline:
                why = f"nothing moved for {idle}s" if stuck else f"not settled in {timeout}s"
                raise AssertionError(f"{why}: {pending}\non the chains: {self._seen(pending)}")
            self.mine(1)
            time.sleep(0.5)

    def _seen(self, pending: list[str]) -> dict[str, object]:
        """What the node wallets say of unsettled deposits (confirmations, or the error)."""
        seen: dict[str, object] = {}
        for item in pending:
            kind, coin, txid = [*item.split(), "", ""][:3]
            if kind != "deposit":
                continue
            try:
                tx = self.chains[coin].node.rpc("gettransaction", txid, wallet="wallet")
                seen[txid] = tx.get("confirmations")
            except (OSError, ChainRPCError) as err:
                seen[txid] = str(err)
        return seen

    def unsettled(self) -> list[str]:
        engine = make_engine(self.database_url)
        try:
            with make_sessionmaker(engine)() as session:
                credited = {
                    (d.chain, d.txid)
                    for d in session.scalars(select(Deposit).where(Deposit.state == "credited"))
                }
                wds = [
                    f"withdrawal {w.id} {w.state}"
                    for w in session.scalars(select(Withdrawal))
                    if w.state not in SETTLED
                ]
        finally:
            engine.dispose()
        with self.stats.lock:
            payments = list(self.payments)
        return [f"deposit {c} {t}" for c, t, _ in payments if (c, t) not in credited] + wds

    def _received(self) -> set[str]:
        """``chain:txid:vout`` of every payment to a member address with N confirmations."""
        ours = {addr for (_, coin), addr in self.addresses.items()}
        received: set[str] = set()
        for coin, chain in self.chains.items():
            for tx in chain.node.rpc("listtransactions", "*", 100_000, wallet="wallet"):
                if (
                    tx.get("category") == "receive"
                    and tx.get("address") in ours
                    and tx.get("confirmations", 0) >= N
                ):
                    received.add(f"{coin}:{tx['txid']}:{tx['vout']}")
        return received

    def uncredited_on_chain(self) -> list[str]:
        engine = make_engine(self.database_url)
        try:
            with make_sessionmaker(engine)() as session:
                credited = {
                    f"{d.chain}:{d.txid}:{d.vout}"
                    for d in session.scalars(select(Deposit).where(Deposit.state == "credited"))
                }
        finally:
            engine.dispose()
        missing = sorted(self._received() - credited)
        return [f"deposit {c} {t} vout {v}" for c, t, v in (k.split(":") for k in missing)]

    def audit(self) -> dict[str, int]:
        """The chains' wallet histories against the ledger; counts of what went wrong (all
        must be 0) and of what was checked."""
        engine = make_engine(self.database_url)
        result = {"deposits_checked": 0, "withdrawals_checked": 0, "lost_deposits": 0,
                  "duplicated_deposits": 0, "unknown_credits": 0, "double_paid": 0,
                  "sent_unpaid": 0, "paid_unsent": 0, "unknown_sends": 0,
                  "audit_problems": 0}  # fmt: skip
        try:
            with make_sessionmaker(engine)() as session:
                report = verify(session)
                result["audit_problems"] = len(report.problems)
                refs = [
                    str(r)
                    for r in session.scalars(
                        select(JournalEntry.reference).where(
                            JournalEntry.reference.like("deposit:%")
                        )
                    )
                ]
                withdrawals = list(session.scalars(select(Withdrawal)))
        finally:
            engine.dispose()
        credits: dict[str, int] = defaultdict(int)
        for ref in refs:
            credits[ref.removeprefix("deposit:")] += 1
        received = self._received()
        result["deposits_checked"] = len(received)
        result["lost_deposits"] = sum(1 for k in received if credits.get(k, 0) == 0)
        result["duplicated_deposits"] = sum(1 for k in received if credits.get(k, 0) > 1)
        result["unknown_credits"] = sum(1 for k in credits if k not in received)
        sends: dict[str, set[str]] = defaultdict(set)
        for tx in self.chains["bitcoin"].node.rpc(
            "listtransactions", "*", 100_000, wallet="wallet"
        ):
            comment = tx.get("comment") or ""
            if tx.get("category") == "send" and comment.startswith("scnode-send:"):
                sends[comment.removeprefix("scnode-send:")].add(tx["txid"])
        known = set()
        for w in withdrawals:
            key = w.send_key or f"wd-{w.id:06d}"
            known.add(key)
            paid = sends.get(key, set())
            result["withdrawals_checked"] += 1
            if len(paid) > 1:
                result["double_paid"] += 1
            if w.state in ("broadcast", "confirmed") and paid != {w.txid}:
                result["sent_unpaid"] += 1
            if w.state not in ("broadcast", "confirmed", "sending") and paid:
                result["paid_unsent"] += 1
        result["unknown_sends"] = sum(1 for k in sends if k not in known)
        return result

    def figures(self, wall: float) -> dict[str, Any]:
        stats = self.stats
        with stats.lock:
            kinds = {
                kind: {
                    "n": len(lat),
                    "p50_ms": round(percentile(lat, 0.50) * 1000, 1),
                    "p99_ms": round(percentile(lat, 0.99) * 1000, 1),
                    "statuses": dict(stats.statuses[kind]),
                    "unanswered": stats.unavailable.get(kind, 0),
                }
                for kind in KINDS
                if (lat := stats.latencies.get(kind, [])) or stats.unavailable.get(kind)
            }
            total = sum(len(v) for v in stats.latencies.values())
        return {"wall_s": round(wall, 1), "requests": total,
                "throughput_per_s": round(total / wall, 1) if wall else 0.0,
                "kinds": kinds, "audits": stats.audits,
                "audit_problems": len(stats.audit_problems)}  # fmt: skip


def start_chain(chain: Chain, rpc_timeout: int | None = RPC_TIMEOUT) -> Chain:
    """``Chain.start`` with a patient chain API start (the CI machine is shared: importing
    the app alone can take longer than the handle's 20 s)."""
    (chain.root / "node").mkdir(parents=True)
    (chain.root / "api").mkdir()
    chain.node = ChainNode(chain.root / "node", chain.coin, "regtest", None, {}, [])
    chain.node.start()
    chain.node.rpc("createwallet", "wallet")
    chain.node.rpc("createwallet", "outside")
    chain.node.mine(101)
    chain.api = ExchangeChainApi(chain.node, chain.root / "api", chain.coin[:3])
    # a short RPC timeout (default 30 s) so that a stalling daemon shows within a test
    if rpc_timeout is not None:
        chain.api.settings["RPC_TIMEOUT"] = str(rpc_timeout)
    chain.api.write_config()
    start_chain_api(chain.api)
    return chain


def wait_rpc_ready(node: ChainNode, timeout: float) -> None:
    """Until the stand-in's RPC answers out of warm-up (fresh connections: thread-safe)."""
    body = json.dumps({"jsonrpc": "1.0", "id": "r", "method": "getblockcount", "params": []})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if node.raw_request(body.encode())[0] == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(
        f"{node.coin} stand-in RPC not ready in {timeout}s:\n{node.output()[-3000:]}"
    )


def start_chain_api(api: ChainApi, timeout: float = START) -> None:
    """Start (or restart, same port and keys) the chain API process and wait for /healthz."""
    log = api.workdir / "api.log"
    argv = ["-m", "scnode_chain_api", "--env-file", str(api.workdir / "chain-api.env"),
            "--port", str(api.port), "--log-level", "warning"]  # fmt: skip
    api.proc = _spawn(argv, log, f"{api.url}/healthz", timeout)
    time.sleep(0.3)  # let the ZMQ subscriptions join


def start_exchange(ex: ExchangeProcess, timeout: float = START) -> None:
    """Start (or restart) the exchange process as ExchangeProcess.start does, patiently."""
    argv = ["-m", "scnode_exchange", "--env-file", str(ex.env_file), "--port", str(ex.port),
            "--log-level", "info"]  # fmt: skip
    ex.proc = _spawn(argv, ex.log, f"{ex.url}/healthz", timeout)


def _spawn(argv: list[str], log: Path, health: str, timeout: float) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[1]} exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(health, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"{argv[1]} not ready in {timeout}s:\n{log.read_text()[-3000:]}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
