"""Durable order path of the exchange: orders/s and latency, SQLite and PostgreSQL side by side.

    .venv/bin/python benchmarks/exchange_durable.py [--orders 3000] [--rate 500] [--seconds 5]
        [--postgres URL] [--clients 64] [--http] [--ws [--inflight 256]] [--repeat 3]

Service level: every order goes through ``Exchange`` into a committed transaction (reserve,
match, fill postings, order/trade rows, sequence) before it counts. Two ways in:

* ``1 order/tx``  — ``Exchange.place_order``: one transaction (one commit) per order;
* ``group commit`` — ``OrderQueue``: concurrent callers, one transaction per batch of the
  orders that arrived while the previous batch committed; each caller is answered after the
  commit that holds its order.

Per database and way: **max orders/s** (``--orders`` orders as fast as the way allows: one
caller for ``1 order/tx``, ``--clients`` concurrent callers for group commit) and **latency at
a paced ``--rate``** for ``--seconds`` (each order is due at ``t0 + i/rate``; latency = answer
time minus due time, so a stall is charged to every order that waited behind it). Workload:
50 funded members, buys and sells a few ticks around one price, 2/3 GTC, 1/3 IOC (about half
the orders trade). Each run starts on a fresh database and ends with the ledger audit.
``--sqlite-full`` adds SQLite rows with ``synchronous=FULL`` (every commit synced: nothing
acknowledged is lost on power loss; see ``scnode_exchange.db``).

HTTP (``--http``, the issue's definition of the durable path): the member API app
(``python -m scnode_exchange``: uvicorn on loopback, its own group commit on
``Exchange.place_orders``) in a child process; an aiohttp client POSTs ``/api/orders`` with
member bearer tokens (``--clients`` concurrent for max orders/s, then paced at ``--rate``);
a WebSocket subscriber on ``/ws/trades`` counts the fills it is sent, checked against the
trades stored. Client and server share the machine's cores; the CPU column is then the
server process's CPU (all threads) per order.

WebSocket order entry (``--ws``): the same app; one ``/ws/trade`` connection per member (50),
orders pipelined on them (``--inflight`` unanswered at once for max orders/s, then paced at
``--rate``); each order counts when its answer arrives, and the server sends that answer only
after the batch holding the order committed. The ``/ws/trades`` subscriber counts fills as for
``--http``. ``--repeat 3`` runs every row three times and prints the per-column median.

PostgreSQL: ``--postgres`` (or ``SCNODE_TEST_POSTGRES_URL``) names a server database used to
create and drop a throwaway database. Prints a table; never fails on figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.db import make_engine, make_sessionmaker, upgrade
from scnode_exchange.ledger import AZC, NODE_WALLET, SATS, Ledger, verify
from scnode_exchange.matching import Fill, MarketSpec, Side, TimeInForce
from scnode_exchange.trading.group import OrderQueue
from scnode_exchange.trading.models import Trade
from scnode_exchange.trading.service import Exchange, OrderCommand, PlaceResult, verify_orders

SPEC = MarketSpec("AZC/SATS", AZC, SATS, lot_size=1_000, tick=1, maker_fee_bps=10,
                  taker_fee_bps=20)  # fmt: skip


@dataclass
class Figures:
    """One row of the table."""

    database: str
    way: str
    max_rate: float = 0.0
    cpu_ms: float = 0.0
    batch: float = 1.0
    p50: float = 0.0
    p99: float = 0.0
    achieved: float = 0.0
    fill_share: float = 0.0
    ws_fills: int = 0
    audit: str = ""


@contextmanager
def database(kind: str, postgres: str | None) -> Iterator[str]:
    """A fresh, migrated database URL of ``kind`` (dropped afterwards)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'exchange.sqlite3'}"
            upgrade(url)
            yield url
        return
    assert postgres
    admin = make_engine(postgres, isolation_level="AUTOCOMMIT")
    name = "scnode_bench_" + secrets.token_hex(5)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(postgres).set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        yield url
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def prepare(sessions: sessionmaker[Session]) -> list[int]:
    """50 members with plenty of both assets."""
    with sessions.begin() as s:
        ledger = Ledger(s)
        ledger.ensure_assets()
        members = [ledger.create_member(f"bench-{i}").id for i in range(50)]
        for asset in (AZC, SATS):
            wallet = ledger.system_account(NODE_WALLET, asset).id
            for m in members:
                ledger.transfer("deposit", "seed", wallet, ledger.member_account(m, asset).id,
                                10**15)  # fmt: skip
    return members


class Workload:
    """A reproducible stream of orders around one price."""

    def __init__(self, members: list[int], seed: int) -> None:
        self.members = members
        self.rng = random.Random(seed)  # noqa: S311  (a reproducible workload, not keys)

    def next(self) -> OrderCommand:
        """The next order."""
        rng = self.rng
        return OrderCommand(
            rng.choice(self.members), SPEC.symbol, rng.choice([Side.BUY, Side.SELL]),
            1_000 + rng.randint(-5, 5), rng.randint(1, 10),
            tif=rng.choice([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC]),
        )  # fmt: skip


def _fills(results: list[PlaceResult]) -> float:
    traded = sum(any(isinstance(e, Fill) for e in r.events) for r in results)
    return traded / max(1, len(results))


def _label(kind: str, synchronous: str) -> str:
    return f"sqlite/{synchronous.lower()}" if kind == "sqlite" else kind


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _paced(
    submit_one: object, workload: Workload, rate: float, seconds: float
) -> tuple[list[float], float]:
    """Submit at ``rate``/s for ``seconds``; latencies (ms) from each order's due time."""
    count = int(rate * seconds)
    latencies: list[float] = []
    loop = asyncio.get_running_loop()

    async def one(due: float, command: OrderCommand) -> None:
        await submit_one(command)  # type: ignore[operator]
        latencies.append(1000 * (loop.time() - due))

    tasks = []
    t0 = loop.time() + 0.05
    for i in range(count):
        due = t0 + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, workload.next())))
    await asyncio.gather(*tasks)
    return latencies, count / (loop.time() - t0)


def run_single(
    url: str, kind: str, orders: int, rate: float, seconds: float, synchronous: str = "NORMAL"
) -> Figures:
    """``Exchange.place_order``, one transaction per order."""
    figures = Figures(_label(kind, synchronous), "1 order/tx")
    engine = make_engine(url, sqlite_synchronous=synchronous)
    sessions = make_sessionmaker(engine)
    workload = Workload(prepare(sessions), seed=11)
    exchange = Exchange(sessions, [SPEC])
    results = []
    cpu0, start = time.process_time(), time.perf_counter()
    for _ in range(orders):
        c = workload.next()
        results.append(exchange.place_order(c.member_id, c.market, c.side, c.price, c.quantity,
                                            c.order_type, c.tif))  # fmt: skip
    elapsed = time.perf_counter() - start
    figures.max_rate = orders / elapsed
    figures.cpu_ms = 1000 * (time.process_time() - cpu0) / orders
    figures.fill_share = _fills(results)

    async def submit(command: OrderCommand) -> PlaceResult:
        c = command
        return await asyncio.to_thread(exchange.place_order, c.member_id, c.market, c.side,
                                       c.price, c.quantity, c.order_type, c.tif)  # fmt: skip

    latencies, figures.achieved = asyncio.run(_paced(submit, workload, rate, seconds))
    figures.p50, figures.p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    figures.audit = _audit(sessions)
    engine.dispose()
    return figures


def run_group(
    url: str, kind: str, orders: int, rate: float, seconds: float, clients: int,
    synchronous: str = "NORMAL",
) -> Figures:  # fmt: skip
    """``OrderQueue``: concurrent callers, one transaction per batch."""
    figures = Figures(_label(kind, synchronous), "group commit")
    engine = make_engine(url, sqlite_synchronous=synchronous)
    sessions = make_sessionmaker(engine)
    workload = Workload(prepare(sessions), seed=11)
    exchange = Exchange(sessions, [SPEC])

    async def scenario() -> None:
        queue = OrderQueue(exchange)
        stop = asyncio.Event()
        worker = asyncio.create_task(queue.run(stop))
        await asyncio.sleep(0)
        results: list[PlaceResult] = []
        remaining = orders

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                results.append(await queue.submit(workload.next()))

        cpu0, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
        figures.max_rate = orders / elapsed
        figures.cpu_ms = 1000 * (time.process_time() - cpu0) / orders
        figures.batch = queue.orders / max(1, queue.batches)
        figures.fill_share = _fills(results)
        latencies, figures.achieved = await _paced(queue.submit, workload, rate, seconds)
        figures.p50, figures.p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
        stop.set()
        await worker

    asyncio.run(scenario())
    figures.audit = _audit(sessions)
    engine.dispose()
    return figures


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_http(
    url: str, kind: str, orders: int, rate: float, seconds: float, clients: int, ws: bool = False
) -> Figures:
    """The member API over HTTP (or ``/ws/trade`` when ``ws``), with a WebSocket subscriber
    counting fills."""
    import aiohttp

    from scnode_core.apikeys import ApiKeyStore, generate
    from scnode_exchange.api.auth import SessionTokens

    figures = Figures(kind, "WS trade+WS" if ws else "HTTP+WS")
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    members = prepare(sessions)
    workload = Workload(members, seed=11)
    with tempfile.TemporaryDirectory() as tmp:
        secret = secrets.token_urlsafe(48)
        (Path(tmp) / "secret").write_text(secret)
        ApiKeyStore([generate({"owner"}, "bench").record]).save(Path(tmp) / "keys.json")
        market = {"symbol": SPEC.symbol, "base": SPEC.base, "quote": SPEC.quote,
                  "lot_size": SPEC.lot_size, "tick": SPEC.tick,
                  "maker_fee_bps": SPEC.maker_fee_bps,
                  "taker_fee_bps": SPEC.taker_fee_bps}  # fmt: skip
        env_file = Path(tmp) / "exchange.env"
        env_file.write_text(
            f"SCNODE_EXCHANGE_DATABASE_URL={url}\n"
            f"SCNODE_EXCHANGE_MARKETS={json.dumps([market])}\n"
            f"SCNODE_EXCHANGE_SESSION_SECRET_FILE={Path(tmp) / 'secret'}\n"
            f"SCNODE_EXCHANGE_OWNER_API_KEYS_FILE={Path(tmp) / 'keys.json'}\n"
            "SCNODE_EXCHANGE_ENVIRONMENT=test\n"
            "SCNODE_EXCHANGE_COOKIE_SECURE=false\n"
            "SCNODE_EXCHANGE_MAX_OPEN_ORDERS_PER_MEMBER=1000000\n"
            "SCNODE_EXCHANGE_ORDERS_PER_SECOND=1000000\n"
            "SCNODE_EXCHANGE_ORDERS_BURST=1000000\n"
        )
        tokens = SessionTokens(secret.encode())
        headers = {m: {"Authorization": f"Bearer {tokens.issue(m)}"} for m in members}
        port = _free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scnode_exchange",
                "--env-file",
                str(env_file),
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
        )
        base = f"http://127.0.0.1:{port}"
        try:
            scenario = _ws_scenario if ws else _http_scenario
            asyncio.run(scenario(base, headers, workload, figures, orders, rate, seconds,
                                 clients, aiohttp, server.pid))  # fmt: skip
        finally:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    with sessions.begin() as s:
        stored = s.scalar(select(func.count(Trade.id))) or 0
    if figures.audit == "":
        figures.audit = _audit(sessions)
    if stored != figures.ws_fills:
        figures.audit += f"; WS sent {figures.ws_fills} fills, {stored} stored"
    else:
        figures.audit += f"; WS fills = stored ({stored})"
    engine.dispose()
    return figures


async def _wait_up(http: Any, base: str, aiohttp: Any) -> None:
    for _ in range(300):  # the app migrates and loads its books first
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{base}/api/health") as reply:
                if reply.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError("the exchange app did not come up")


async def _measure(
    http: Any, base: str, submit: Any, workload: Workload, figures: Figures,
    orders: int, rate: float, seconds: float, clients: int, pid: int,
) -> None:  # fmt: skip
    """Max orders/s with ``clients`` concurrent submitters, then latency paced at ``rate``,
    while a ``/ws/trades`` subscriber counts the fills it is sent."""
    fills = 0
    ws = await http.ws_connect(f"{base}/ws/trades", params={"market": SPEC.symbol})

    async def count() -> None:
        nonlocal fills
        async for message in ws:
            data = json.loads(message.data)
            if data.get("type") == "update":
                fills += len(data["trades"])

    counter = asyncio.create_task(count())
    traded = 0

    async def counted(command: OrderCommand) -> None:
        nonlocal traded
        filled = await submit(command)  # (not `traded += await …`: that reads before it waits)
        traded += bool(filled)

    remaining = orders

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await counted(workload.next())

    cpu0, start = _process_cpu(pid), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    figures.max_rate = orders / (time.perf_counter() - start)
    figures.cpu_ms = 1000 * (_process_cpu(pid) - cpu0) / orders  # the server's CPU
    figures.fill_share = traded / orders
    latencies, figures.achieved = await _paced(counted, workload, rate, seconds)
    figures.p50, figures.p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    await asyncio.sleep(1.0)  # the last fills' messages
    await ws.close()
    counter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await counter
    figures.ws_fills = fills


def _order_body(command: OrderCommand) -> dict[str, Any]:
    return {"market": command.market, "side": command.side.value, "price": command.price,
            "quantity": command.quantity, "type": command.order_type.value,
            "time_in_force": command.tif.value}  # fmt: skip


async def _http_scenario(
    base: str, headers: dict[int, dict[str, str]], workload: Workload, figures: Figures,
    orders: int, rate: float, seconds: float, clients: int, aiohttp: Any, pid: int,
) -> None:  # fmt: skip
    connector = aiohttp.TCPConnector(limit=max(clients, 256))
    async with aiohttp.ClientSession(connector=connector) as http:
        await _wait_up(http, base, aiohttp)

        async def submit(command: OrderCommand) -> int:
            async with http.post(f"{base}/api/orders", json=_order_body(command),
                                 headers=headers[command.member_id]) as reply:  # fmt: skip
                if reply.status != 201:
                    raise RuntimeError(f"POST /api/orders: {reply.status} {await reply.text()}")
                view = await reply.json()
                return int(view.get("filled") or 0)

        await _measure(http, base, submit, workload, figures, orders, rate, seconds, clients, pid)


async def _ws_scenario(
    base: str, headers: dict[int, dict[str, str]], workload: Workload, figures: Figures,
    orders: int, rate: float, seconds: float, inflight: int, aiohttp: Any, pid: int,
) -> None:  # fmt: skip
    async with aiohttp.ClientSession() as http:
        await _wait_up(http, base, aiohttp)
        sockets = {m: await http.ws_connect(f"{base}/ws/trade", headers=h)
                   for m, h in headers.items()}  # fmt: skip
        waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        next_id = 0

        async def read(sock: Any) -> None:
            async for message in sock:
                reply = json.loads(message.data)
                future = waiting.pop(reply["client_id"], None)
                if future is not None and not future.done():
                    future.set_result(reply)

        readers = [asyncio.create_task(read(sock)) for sock in sockets.values()]

        async def submit(command: OrderCommand) -> int:
            nonlocal next_id
            next_id += 1
            future = waiting[next_id] = asyncio.get_running_loop().create_future()
            await sockets[command.member_id].send_str(
                json.dumps({"op": "place", "client_id": next_id, **_order_body(command)})
            )
            reply = await future
            if not reply["ok"]:
                raise RuntimeError(f"/ws/trade: {reply['error']} {reply['detail']}")
            return int(reply["order"]["filled"])

        try:
            await _measure(http, base, submit, workload, figures, orders, rate, seconds,
                           inflight, pid)  # fmt: skip
        finally:
            for sock in sockets.values():
                await sock.close()
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)


def _median(rows: list[Figures]) -> Figures:
    """The per-column median of repeated runs (the audit of every run kept)."""
    if len(rows) == 1:
        return rows[0]
    out = Figures(rows[0].database, rows[0].way)
    for name in ("max_rate", "cpu_ms", "batch", "p50", "p99", "achieved", "fill_share"):
        setattr(out, name, statistics.median(getattr(r, name) for r in rows))
    out.ws_fills = int(statistics.median(r.ws_fills for r in rows))
    audits = {r.audit for r in rows}
    out.audit = f"median of {len(rows)}; " + (audits.pop() if len(audits) == 1 else " | ".join(
        sorted(audits)))  # fmt: skip
    return out


def _audit(sessions: sessionmaker[Session]) -> str:
    with sessions.begin() as s:
        problems = verify(s).problems + verify_orders(s, [SPEC])
    return "clean" if not problems else f"PROBLEMS: {problems[:2]}"


def main() -> None:
    """Parse arguments, run every database and way, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--postgres", default=os.environ.get("SCNODE_TEST_POSTGRES_URL"))
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--http", action="store_true", help="also the member API over HTTP")
    parser.add_argument(
        "--sqlite-full", action="store_true", help="also SQLite with synchronous=FULL"
    )
    parser.add_argument("--ws", action="store_true", help="also order entry over /ws/trade")
    parser.add_argument("--inflight", type=int, default=256, help="--ws: pipelined orders")
    parser.add_argument("--repeat", type=int, default=1, help="runs per row (median)")
    parser.add_argument("--no-service", action="store_true", help="only the API paths")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.postgres else ["sqlite"]
    if args.only:
        kinds = [args.only]
    load = os.getloadavg()
    rows = []

    def repeated(run: Any, *more: Any) -> Figures:
        runs = []
        for _ in range(max(1, args.repeat)):
            with database(kind, args.postgres) as url:
                runs.append(run(url, kind, args.orders, args.rate, args.seconds, *more))
        return _median(runs)

    for kind in kinds:
        levels = ["NORMAL", "FULL"] if kind == "sqlite" and args.sqlite_full else ["NORMAL"]
        for level in [] if args.no_service else levels:
            rows.append(repeated(run_single, level))
            rows.append(repeated(run_group, args.clients, level))
        if args.http:
            rows.append(repeated(run_http, args.clients))
        if args.ws:
            rows.append(repeated(run_http, args.inflight, True))
    after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"after: {after}; {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'database':<14}{'way':<14}{'max orders/s':>13}{'CPU ms/order':>13}"
          f"{'mean batch':>11}{'traded':>8}  {'p50 ms':>7}{'p99 ms':>8} @{args.rate:,.0f}/s"
          f"{'(got)':>8}  audit")  # fmt: skip
    for r in rows:
        print(f"{r.database:<14}{r.way:<14}{r.max_rate:>13,.0f}{r.cpu_ms:>13.2f}{r.batch:>11.1f}"
              f"{r.fill_share:>8.0%}  {r.p50:>7.2f}{r.p99:>8.2f}        {r.achieved:>8,.0f}  "
              f"{r.audit}")  # fmt: skip


if __name__ == "__main__":
    main()
