"""Mining payout split: time to split one pool payout among many members.

    .venv/bin/python benchmarks/payout_split.py [--members 1000] [--workers 3] [--unknown 10]
        [--payouts 10] [--url URL]

Without ``--url`` it runs on a temporary SQLite file (WAL). Each member registers ``--workers``
worker names; every payout's work map has every registered worker plus ``--unknown`` unknown
ones with random difficulties. Timed: ``MiningService.split`` per payout (one transaction: one
journal entry with a posting per member, payout/work/part rows) and a replay of every split
(must post nothing). Wall-clock figures depend on the machine's load; CPU seconds of this
process are the steadier figure. Prints; never fails.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, insert, select

from scnode_exchange.db import make_engine, make_sessionmaker, upgrade
from scnode_exchange.ledger import JournalEntry, Ledger, verify
from scnode_exchange.mining import MiningConfig, MiningService, PoolPayout
from scnode_exchange.mining.models import MiningWorker


def run(url: str, members: int, workers: int, unknown: int, payouts: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        ledger = Ledger(session)
        ledger.ensure_assets()
        ids = [ledger.create_member(f"bench-{i}").id for i in range(members)]
        session.execute(
            insert(MiningWorker),
            [
                {"pool": "azc", "name": f"m{m}.rig{w}", "member_id": m}
                for m in ids
                for w in range(workers)
            ],
        )
    mining = MiningService(sessions, MiningConfig(fee_bps={"btc": 100, "azc": 100}))
    rng = random.Random(7)  # noqa: S311  (reproducible work maps, not secrets)
    names = [f"m{m}.rig{w}" for m in ids for w in range(workers)]
    names += [f"ghost{i}" for i in range(unknown)]
    jobs = [
        (
            PoolPayout("azc", f"cb{i}:0", 5_000_000_000, 100, True, i * 600, (i + 1) * 600),
            {n: rng.uniform(0, 1e6) for n in names},
        )
        for i in range(payouts)
    ]
    wall, cpu = time.perf_counter(), time.process_time()
    for payout, work in jobs:
        mining.split(payout, work)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rwall, rcpu = time.perf_counter(), time.process_time()
    for payout, work in jobs:
        assert not mining.split(payout, work)[1]
    rwall, rcpu = time.perf_counter() - rwall, time.process_time() - rcpu
    with sessions() as session:
        entries = session.scalar(select(func.count(JournalEntry.id)))
        ok = verify(session).ok
    engine.dispose()
    print(
        f"{payouts} payouts x {members} members ({len(names)} workers, {unknown} unknown): "
        f"split {wall / payouts * 1000:.0f} ms wall, {cpu / payouts * 1000:.0f} ms CPU per payout; "
        f"replay {rwall / payouts * 1000:.0f} ms wall, {rcpu / payouts * 1000:.0f} ms CPU; "
        f"journal entries {entries}; audit {'ok' if ok else 'FAILED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--unknown", type=int, default=10)
    parser.add_argument("--payouts", type=int, default=10)
    parser.add_argument("--url", default=None)
    args = parser.parse_args()
    if args.url:
        run(args.url, args.members, args.workers, args.unknown, args.payouts)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(
            f"sqlite:///{Path(tmp) / 'bench.sqlite3'}",
            args.members,
            args.workers,
            args.unknown,
            args.payouts,
        )


if __name__ == "__main__":
    main()
