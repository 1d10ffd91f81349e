"""Soak: the exchange (real process, SQLite) with its two chain APIs and simnet chain stand-ins
on loopback under a mixed load from many members — limit orders, cancels, sats withdrawals,
balance reads, deposits paid by the simulated outside world, a block a second — with the
ledger audit every few seconds and at the end, then the chains' wallet histories compared with
the ledger (lost / duplicated deposits, withdrawals paid twice or not at all: all must be 0).

    .venv/bin/python benchmarks/soak_exchange.py                 # 10 minutes, 50 members
    .venv/bin/python benchmarks/soak_exchange.py --short         # ~60 s of load
    .venv/bin/python benchmarks/soak_exchange.py --minutes 30 --members 100 --workers 16

Prints p50/p99 latency per request kind, throughput, the exchange's RSS growth and the audit
counts as JSON; exits 1 if any invariant failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "apps")]

from tests.assurance.loadgen import World, rss_kib  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--workers", type=int, default=8, help="client threads")
    parser.add_argument("--audit-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--short", action="store_true", help="60 s of load, 20 members")
    args = parser.parse_args()
    seconds = args.minutes * 60
    if args.short:
        seconds, args.members, args.audit_every = 60.0, min(args.members, 20), 5.0
    root = Path(tempfile.mkdtemp(prefix="scnode-soak-"))
    world = World(root, args.members)
    try:
        started = time.monotonic()
        world.start()
        world.fund_everyone()
        print(f"started and funded {args.members} members in {time.monotonic() - started:.1f}s",
              file=sys.stderr)  # fmt: skip
        assert world.exchange.proc is not None
        pid = world.exchange.proc.pid
        rss_before = rss_kib(pid)
        wall = world.run_load(seconds, args.workers, audit_every=args.audit_every, seed=args.seed)
        rss_after = rss_kib(pid)
        settle = time.monotonic()
        world.wait_settled(timeout=300)
        world.check_ledger()
        figures = world.figures(wall)
        figures["members"] = args.members
        figures["workers"] = args.workers
        figures["settle_s"] = round(time.monotonic() - settle, 1)
        figures["rss_kib_start"] = rss_before
        figures["rss_kib_end"] = rss_after
        figures["rss_growth_kib"] = rss_after - rss_before
        figures["server_errors"] = world.stats.server_errors()
        figures["ledger_vs_chain"] = audit = world.audit()
        figures["audit_problems"] = len(world.stats.audit_problems)
        print(json.dumps(figures, indent=2))
        bad = {k: v for k, v in audit.items() if not k.endswith("_checked") and v}
        if bad or figures["audit_problems"] or figures["server_errors"]:
            print(f"FAILED: {bad} {world.stats.audit_problems[:5]}", file=sys.stderr)
            return 1
        return 0
    finally:
        world.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
