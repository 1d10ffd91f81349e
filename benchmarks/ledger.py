"""Postings per second of the exchange ledger, and orders per second through the trading glue.

    .venv/bin/python benchmarks/ledger.py [--entries 3000] [--orders 2000] [--url URL]

Without ``--url`` it runs on a temporary SQLite file (WAL). Figures: transfers committed one
per transaction (2 postings each: the durable path a deposit or withdrawal takes), the same
batched 100 per transaction, and ``Exchange.place_order`` (reserve + match + fill postings +
order/trade rows, one transaction each). Wall-clock rates depend on the machine's load;
the CPU milliseconds per operation (this process only) are the steadier figure. Prints;
never fails.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from scnode_exchange.db import make_engine, make_sessionmaker, upgrade
from scnode_exchange.ledger import AZC, NODE_WALLET, SATS, Ledger, verify
from scnode_exchange.matching import MarketSpec, Side, TimeInForce
from scnode_exchange.trading.service import Exchange


def run(url: str, entries: int, orders: int) -> None:
    """Measure on the (empty) database at ``url``."""
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as s:
        ledger = Ledger(s)
        ledger.ensure_assets()
        members = [ledger.create_member(f"bench-{i}").id for i in range(20)]
        accounts = [ledger.member_account(m, SATS).id for m in members]
        wallet = ledger.system_account(NODE_WALLET, SATS).id
        for m in members:
            ledger.transfer("deposit", "seed", ledger.system_account(NODE_WALLET, AZC).id,
                            ledger.member_account(m, AZC).id, 10**15)  # fmt: skip
    rng = random.Random(7)  # noqa: S311  (a reproducible workload)

    cpu0 = time.process_time()
    start = time.perf_counter()
    for i in range(entries):
        with sessions.begin() as s:
            Ledger(s).transfer("deposit", "bench", wallet, accounts[i % 20], rng.randint(1, 10**6))
    single = time.perf_counter() - start
    single_cpu = time.process_time() - cpu0

    start = time.perf_counter()
    for batch in range(entries // 100):
        with sessions.begin() as s:
            ledger = Ledger(s)
            for i in range(100):
                src, dst = rng.sample(accounts, 2)
                ledger.transfer("transfer", "bench", src, dst, 1, reference=f"b{batch}-{i}")
    batched = time.perf_counter() - start

    spec = MarketSpec("AZC/SATS", AZC, SATS, lot_size=1_000, tick=1, maker_fee_bps=10,
                      taker_fee_bps=20)  # fmt: skip
    exchange = Exchange(sessions, [spec])
    fills = 0
    cpu0 = time.process_time()
    start = time.perf_counter()
    for _ in range(orders):
        side = rng.choice([Side.BUY, Side.SELL])
        result = exchange.place_order(
            rng.choice(members), spec.symbol, side, 1_000 + rng.randint(-20, 20),
            rng.randint(1, 10), tif=rng.choice([TimeInForce.GTC, TimeInForce.IOC]),
        )  # fmt: skip
        fills += sum(type(e).__name__ == "Fill" for e in result.events)
    placing = time.perf_counter() - start
    placing_cpu = time.process_time() - cpu0

    with sessions.begin() as s:
        report = verify(s)
    engine.dispose()
    print(f"database                      {engine.dialect.name}")
    print(f"1 entry / transaction         {entries / single:>10,.0f} entries/s "
          f"= {2 * entries / single:,.0f} postings/s; "
          f"{1000 * single_cpu / entries:.2f} ms CPU each")  # fmt: skip
    print(f"100 entries / transaction     {(entries // 100) * 100 / batched:>10,.0f} entries/s "
          f"= {2 * (entries // 100) * 100 / batched:,.0f} postings/s")  # fmt: skip
    print(f"place_order (durable)         {orders / placing:>10,.0f} orders/s "
          f"({fills} fills, mean {1000 * placing / orders:.2f} ms, "
          f"{1000 * placing_cpu / orders:.2f} ms CPU each)")  # fmt: skip
    print(f"audit after the run           {'clean' if report.ok else report.problems[:3]} "
          f"({report.postings:,} postings)")  # fmt: skip


def main() -> None:
    """Parse arguments and run once."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=3000)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--url", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    if args.url:
        run(args.url, args.entries, args.orders)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{Path(tmp) / 'ledger.sqlite3'}", args.entries, args.orders)


if __name__ == "__main__":
    main()
