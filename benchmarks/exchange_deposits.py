"""Deposit credit path: 10,000 deposits credited (issue 6 target: < 10 s).

    .venv/bin/python benchmarks/exchange_deposits.py [--deposits 10000] [--members 1000]
        [--batch 500] [--url URL]

Without ``--url`` it runs on a temporary SQLite file (WAL). The workload is what the watcher
does after a burst of payments: every output is first seen (pending, 1 confirmation), then a
block brings all of them to N and ``DepositService.apply`` credits them in batches (one
transaction per batch: deposit rows, one journal entry node_wallet -> member each, the event
cursor). Timed: the crediting pass; also shown: the pending pass and a replay of the crediting
pass (must credit nothing). Wall-clock figures depend on the machine's load; CPU seconds of
this process are the steadier figure. Prints; never fails.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

from scnode_exchange.db import make_engine, make_sessionmaker, upgrade
from scnode_exchange.deposits.models import DepositAddress
from scnode_exchange.deposits.service import ChainDepositConfig, DepositService, Observation
from scnode_exchange.ledger import SATS, Ledger, verify

N = 3


def run(url: str, deposits: int, members: int, batch: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        ledger = Ledger(session)
        ledger.ensure_assets()
        ids = [ledger.create_member(f"bench-{i}").id for i in range(members)]
        session.execute(
            insert(DepositAddress),
            [{"member_id": m, "chain": "bitcoin", "address": f"bcrt1qbench{m}"} for m in ids],
        )
    service = DepositService(sessions, {"bitcoin": ChainDepositConfig(SATS, N)})

    def observations(confirmations: int) -> list[Observation]:
        return [
            Observation(
                "bitcoin",
                f"{i:064x}",
                i % 4,
                f"bcrt1qbench{ids[i % members]}",
                1_000 + i,
                confirmations,
                "00" * 32,
            )
            for i in range(deposits)
        ]

    def apply_all(items: list[Observation]) -> tuple[float, float, int]:
        cpu, wall, credited = time.process_time(), time.perf_counter(), 0
        for start in range(0, len(items), batch):
            result = service.apply(items[start : start + batch], chain="bitcoin", cursor=start)
            credited += len(result.credited)
        return time.perf_counter() - wall, time.process_time() - cpu, credited

    seen_wall, seen_cpu, _ = apply_all(observations(1))
    credit_wall, credit_cpu, credited = apply_all(observations(N))
    replay_wall, _, again = apply_all(observations(N + 1))
    with sessions() as session:
        ok = verify(session).ok
    total = sum(Ledger(s).member_account(m, SATS).balance for s in [sessions()] for m in ids[:10])
    engine.dispose()
    print(f"backend: {engine.dialect.name}, {deposits} deposits to {members} members, "
          f"batches of {batch}, N={N}")  # fmt: skip
    print(f"  first seen (pending):  {seen_wall:6.2f} s wall, {seen_cpu:6.2f} s CPU, "
          f"{deposits / seen_wall:8.0f}/s")  # fmt: skip
    print(f"  credited at N:         {credit_wall:6.2f} s wall, {credit_cpu:6.2f} s CPU, "
          f"{credited / credit_wall:8.0f}/s  ({credited} credited; target: 10000 in < 10 s "
          f"-> {'met' if credited >= 10_000 and credit_wall < 10 else 'NOT met'})")  # fmt: skip
    print(f"  replayed (idempotent): {replay_wall:6.2f} s wall, {again} credited again")
    print(f"  ledger audit: {'ok' if ok else 'FAILED'}; first 10 members hold {total} sats")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deposits", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--url", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    if args.url:
        run(args.url, args.deposits, args.members, args.batch)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", args.deposits, args.members, args.batch)


if __name__ == "__main__":
    main()
