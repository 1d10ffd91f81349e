"""Soak: the exchange (real process, SQLite) with its two chain APIs and simnet chain stand-ins
on loopback under a mixed load from many members — limit orders, cancels, sats withdrawals,
balance reads, deposits paid by the simulated outside world, a block a second — with the
ledger audit every few seconds and at the end, then the chains' wallet histories compared with
the ledger (lost / duplicated deposits, withdrawals paid twice or not at all: all must be 0).

    .venv/bin/python benchmarks/soak_exchange.py                 # 10 minutes, 50 members
    .venv/bin/python benchmarks/soak_exchange.py --short         # ~60 s of load
    .venv/bin/python benchmarks/soak_exchange.py --minutes 30 --members 100 --workers 16
    .venv/bin/python benchmarks/soak_exchange.py --faults        # with kill -9 (below)

``--faults``: at seeded random moments (every ``--fault-every`` s on average) SIGKILL, in a
random order round after round, the exchange, each chain API and each chain stand-in daemon
(Bitcoin, AZCoin; restarted on the same datadir, so chain and wallet persist as a real
bitcoind's) and start it again as systemd would; after each restart a deposit on the target's
chain must be credited (recovery time; a probe not credited in 180 s fails the run). With
faults, a 503 (the exchange saying a dependency is down, retry) is counted but allowed; any
other 5xx fails the run. The chain APIs run with their deployed RPC timeout (30 s) unless
``--rpc-timeout`` says otherwise.

Prints p50/p99 latency per request kind, throughput, the exchange's RSS growth and the audit
counts as JSON; exits 1 if any invariant failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "apps")]

from tests.assurance.loadgen import Fault, World, rss_kib  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--workers", type=int, default=8, help="client threads")
    parser.add_argument("--audit-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--short", action="store_true", help="60 s of load, 20 members")
    parser.add_argument("--faults", action="store_true", help="kill -9 apps and stand-ins")
    parser.add_argument("--fault-every", type=float, default=45.0, help="mean seconds")
    parser.add_argument(
        "--rpc-timeout", type=int, default=None,
        help="the chain APIs' RPC timeout, s (default: the app's, 30 s, as deployed)",
    )  # fmt: skip
    parser.add_argument(
        "--withdraw-share", type=float, default=0.10, help="of the requests (default 0.10)"
    )
    parser.add_argument(
        "--settle-max", type=float, default=1800.0,
        help="seconds the backlog may take to settle after the load (fails sooner if nothing "
        "settles for 120 s)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)  # noqa: S311 - a load seed, not a secret
    seconds = args.minutes * 60
    if args.short:
        seconds, args.members, args.audit_every = 60.0, min(args.members, 20), 5.0
    root = Path(tempfile.mkdtemp(prefix="scnode-soak-"))
    world = World(
        root, args.members, withdraw_share=args.withdraw_share, rpc_timeout=args.rpc_timeout
    )
    try:
        started = time.monotonic()
        world.start()
        world.fund_everyone()
        print(f"started and funded {args.members} members in {time.monotonic() - started:.1f}s",
              file=sys.stderr)  # fmt: skip
        assert world.exchange.proc is not None
        pid = world.exchange.proc.pid
        rss_before = rss_kib(pid)
        faults: list[Fault] = []
        inject = None
        if args.faults:
            mean = args.fault_every
            rng = random.Random(args.seed ^ 0x5EED)  # noqa: S311 - the fault moments
            inject = world.fault_injector(rng, faults, (mean * 0.3, mean * 0.7))
        wall = world.run_load(
            seconds, args.workers, audit_every=args.audit_every, seed=args.seed, during=inject
        )
        assert world.exchange.proc is not None
        rss_after = rss_kib(world.exchange.proc.pid)
        load_average = [round(x, 1) for x in os.getloadavg()]
        backlog = world.unsettled()
        settle = time.monotonic()
        world.wait_settled(timeout=args.settle_max, idle=120)
        world.check_ledger()
        figures = world.figures(wall)
        figures["seed"] = args.seed
        figures["members"] = args.members
        figures["workers"] = args.workers
        figures["settle_s"] = round(time.monotonic() - settle, 1)
        # what the load left to do: deposits to credit, withdrawals to send and confirm
        figures["unsettled_at_end_of_load"] = {
            "deposits": sum(1 for b in backlog if b.startswith("deposit")),
            "withdrawals": sum(1 for b in backlog if b.startswith("withdrawal")),
        }
        figures["load_average_at_end_of_load_1_5_15"] = load_average
        figures["rss_kib_start"] = rss_before
        figures["rss_kib_end"] = rss_after
        figures["rss_growth_kib"] = rss_after - rss_before
        if any(f.target == "exchange" for f in faults):  # RSS since its last restart
            figures["rss_growth_kib"] = None
        figures["server_errors"] = errors = world.stats.server_errors()
        if args.faults:
            figures["faults"] = [vars(f) for f in faults]
            figures["service_unavailable_503"] = world.stats.status_count(503)
            errors = world.stats.server_errors(allow=(503,))
        figures["ledger_vs_chain"] = audit = world.audit()
        figures["audit_problems"] = len(world.stats.audit_problems)
        print(json.dumps(figures, indent=2))
        bad = {k: v for k, v in audit.items() if not k.endswith("_checked") and v}
        # a probe the end of the load cut short is no failure: the settling above covered it
        unrecovered = [f.target for f in faults[:-1] if f.recovered_s is None]
        unrecovered += [f.target for f in faults[-1:] if f.error]
        if bad or figures["audit_problems"] or errors or unrecovered:
            problems = world.stats.audit_problems[:5]
            print(f"FAILED: {bad} {problems} {errors} unrecovered {unrecovered}", file=sys.stderr)
            return 1
        return 0
    finally:
        world.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
