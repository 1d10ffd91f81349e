"""Run the payout watcher alone: ``python -m scnode_exchange.mining --env-file FILE``.

It splits each pool payout once it is mature (see ``watcher.py``); SIGTERM/SIGINT stop it
cleanly, and a kill at any point loses nothing (a split is one transaction, replayed safely).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from pydantic import ValidationError

from scnode_exchange.db import make_engine, make_sessionmaker, upgrade
from scnode_exchange.ledger import Ledger
from scnode_exchange.mining.settings import MiningSettings, PayoutWorkers


async def _run(settings: MiningSettings) -> None:
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        Ledger(session).ensure_assets()
    workers = PayoutWorkers(settings, sessions)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"payout watcher: pools {', '.join(sorted(settings.mining_pools))}", flush=True)
    try:
        await workers.run(stop)
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scnode-exchange-mining", description=__doc__)
    parser.add_argument("--env-file", help="settings file (SCNODE_EXCHANGE_* lines)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = MiningSettings(_env_file=args.env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            print(f"setting SCNODE_EXCHANGE_{field.upper()}: {error['msg']}", file=sys.stderr)
        return 2
    if not settings.mining_pools:
        print("setting SCNODE_EXCHANGE_MINING_POOLS: no pool configured", file=sys.stderr)
        return 2
    try:
        asyncio.run(_run(settings))
    except ValueError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
