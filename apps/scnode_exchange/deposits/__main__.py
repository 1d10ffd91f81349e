"""Run the deposit watcher alone: ``python -m scnode_exchange.deposits --env-file FILE``.

The exchange app runs the same watcher in its lifespan; this entry point exists so a fault
test (or an operator) can stop or kill exactly the watcher. SIGTERM/SIGINT stop it cleanly; a
SIGKILL loses at most the batch being applied, which the next start replays.
"""

from __future__ import annotations

import asyncio
import sys

from prometheus_client import start_http_server

from scnode_core import cli
from scnode_exchange.deposits.settings import DepositSettings, build_deposits
from scnode_exchange.deposits.watcher import DepositMetrics
from scnode_exchange.runner import ready_database, stop_on_signals


async def _run(settings: DepositSettings) -> None:
    with ready_database(settings.database_url) as sessions:
        metrics = DepositMetrics()
        if settings.deposit_metrics_port:
            start_http_server(settings.deposit_metrics_port, "127.0.0.1", registry=metrics.registry)
        _, watcher, clients = build_deposits(
            sessions,
            settings.chains,
            batch_size=settings.deposit_batch_size,
            refresh_below=settings.deposit_refresh_below,
            metrics=metrics,
        )
        stop = stop_on_signals()
        print(f"deposit watcher: following {', '.join(sorted(clients))}", flush=True)
        try:
            await watcher.run(stop)
        finally:
            for client in clients.values():
                await client.aclose()


def main(argv: list[str] | None = None) -> int:
    args = cli.parser("scnode-exchange-deposits", __doc__, "SCNODE_EXCHANGE_").parse_args(argv)
    cli.setup_logging(args.log_level)
    settings = cli.load_settings(DepositSettings, args.env_file)
    if settings is None:
        return 2
    if not settings.chains:
        print("setting SCNODE_EXCHANGE_CHAINS: no chain to follow", file=sys.stderr)
        return 2
    try:
        asyncio.run(_run(settings))
    except ValueError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
