"""Run the payout watcher alone: ``python -m scnode_exchange.mining --env-file FILE``.

It splits each pool payout once it is mature (see ``watcher.py``); SIGTERM/SIGINT stop it
cleanly, and a kill at any point loses nothing (a split is one transaction, replayed safely).
"""

from __future__ import annotations

import asyncio
import sys

from scnode_core import cli
from scnode_exchange.mining.settings import MiningSettings, PayoutWorkers
from scnode_exchange.runner import ready_database, stop_on_signals


async def _run(settings: MiningSettings) -> None:
    with ready_database(settings.database_url) as sessions:
        workers = PayoutWorkers(settings, sessions)
        stop = stop_on_signals()
        print(f"payout watcher: pools {', '.join(sorted(settings.mining_pools))}", flush=True)
        await workers.run(stop)


def main(argv: list[str] | None = None) -> int:
    args = cli.parser("scnode-exchange-mining", __doc__, "SCNODE_EXCHANGE_").parse_args(argv)
    cli.setup_logging(args.log_level)
    settings = cli.load_settings(MiningSettings, args.env_file)
    if settings is None:
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
