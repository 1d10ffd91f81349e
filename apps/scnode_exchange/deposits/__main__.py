"""Run the deposit watcher alone: ``python -m scnode_exchange.deposits --env-file FILE``.

The exchange app runs the same watcher in its lifespan; this entry point exists so a fault
test (or an operator) can stop or kill exactly the watcher. SIGTERM/SIGINT stop it cleanly; a
SIGKILL loses at most the batch being applied, which the next start replays.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from prometheus_client import start_http_server
from pydantic import ValidationError

from scnode_exchange.db import make_engine, make_sessionmaker, upgrade
from scnode_exchange.deposits.settings import DepositSettings, build_deposits
from scnode_exchange.deposits.watcher import DepositMetrics
from scnode_exchange.ledger import Ledger


async def _run(settings: DepositSettings) -> None:
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        Ledger(session).ensure_assets()
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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"deposit watcher: following {', '.join(sorted(clients))}", flush=True)
    try:
        await watcher.run(stop)
    finally:
        for client in clients.values():
            await client.aclose()
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scnode-exchange-deposits", description=__doc__)
    parser.add_argument("--env-file", help="settings file (SCNODE_EXCHANGE_* lines)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = DepositSettings(_env_file=args.env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            print(f"setting SCNODE_EXCHANGE_{field.upper()}: {error['msg']}", file=sys.stderr)
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
