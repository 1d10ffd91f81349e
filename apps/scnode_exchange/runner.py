"""What the exchange's stand-alone workers (``python -m scnode_exchange.deposits``,
``….mining``) do the same way before and around their loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.db import make_engine, make_sessionmaker, upgrade
from scnode_exchange.ledger import Ledger


@contextlib.contextmanager
def ready_database(url: str) -> Iterator[sessionmaker[Session]]:
    """Migrate the schema, make sure the assets exist, hand out sessions; dispose at the end."""
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    try:
        with sessions.begin() as session:
            Ledger(session).ensure_assets()
        yield sessions
    finally:
        engine.dispose()


def stop_on_signals() -> asyncio.Event:
    """An event SIGTERM and SIGINT set (call from inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
