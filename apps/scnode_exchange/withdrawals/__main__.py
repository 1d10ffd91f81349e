"""Run the withdrawal worker alone: ``python -m scnode_exchange.withdrawals``.

Settings come from ``SCNODE_EXCHANGE_*`` variables (see ``settings.py``) or ``--env-file``.
The schema must already be migrated (the exchange app does it; ``--upgrade`` does it here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

from pydantic import ValidationError

from scnode_core import cli
from scnode_exchange.chainclient import ChainApiClient
from scnode_exchange.db import make_engine, make_sessionmaker, upgrade
from scnode_exchange.runner import stop_on_signals
from scnode_exchange.settings import client_key
from scnode_exchange.withdrawals.chain import ChainApiSender
from scnode_exchange.withdrawals.service import WithdrawalService
from scnode_exchange.withdrawals.settings import WithdrawalSettings
from scnode_exchange.withdrawals.worker import WithdrawalWorker

log = logging.getLogger("scnode_exchange.withdrawals")


async def serve(settings: WithdrawalSettings) -> None:
    """Run the worker until SIGTERM/SIGINT."""
    engine = make_engine(settings.database_url)
    senders = {
        name: ChainApiSender(ChainApiClient(c.api_url, client_key(c)))
        for name, c in settings.chains.items()
    }
    service = WithdrawalService(
        make_sessionmaker(engine),
        settings.policies(),
        send_key_prefix=settings.withdrawal_key_prefix,
    )
    worker = WithdrawalWorker(
        service,
        senders,
        poll_seconds=settings.withdrawal_poll_seconds,
        batch=settings.withdrawal_batch,
        follow_seconds=settings.withdrawal_follow_seconds,
        crash_at=settings.crash_at,
    )
    stop = stop_on_signals()
    try:
        await worker.run(stop)
    finally:
        for sender in senders.values():
            with contextlib.suppress(Exception):
                await sender.aclose()
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("scnode-exchange-withdrawals", __doc__, "SCNODE_EXCHANGE_")
    parser.add_argument("--upgrade", action="store_true", help="migrate the schema first")
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level, "%(asctime)s " + cli.LOG_FORMAT)
    try:
        settings = WithdrawalSettings(_env_file=args.env_file)  # type: ignore[call-arg]
        settings.policies()
    except (ValidationError, ValueError) as exc:
        print(f"withdrawal settings: {exc}", file=sys.stderr)
        return 2
    if args.upgrade:
        upgrade(settings.database_url)
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
