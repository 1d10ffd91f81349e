"""Deposits: addresses per member per chain, the credit state machine, the watcher that
follows the chain APIs, and the member/owner routes (``api.build_router``)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.deposits.service import (
    ChainDepositConfig,
    DepositError,
    DepositService,
    Observation,
)
from scnode_exchange.deposits.settings import build_deposits
from scnode_exchange.deposits.watcher import DepositMetrics, DepositWatcher

__all__ = [
    "ChainDepositConfig",
    "DepositError",
    "DepositMetrics",
    "DepositService",
    "DepositWatcher",
    "DepositWorker",
    "Observation",
    "build_worker",
]


class DepositWorker:
    """The watcher plus its chain API clients, closed when ``run`` ends."""

    def __init__(
        self, settings: Any, sessions: sessionmaker[Session], metrics: DepositMetrics | None = None
    ) -> None:
        self.service, self.watcher, self.clients = build_deposits(
            sessions, settings.chains, metrics=metrics
        )

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.watcher.run(stop)
        finally:
            for client in self.clients.values():
                await client.aclose()


def build_worker(
    settings: Any, sessions: sessionmaker[Session], metrics: DepositMetrics | None = None
) -> DepositWorker | None:
    """What the exchange app runs in its lifespan: the deposit watcher over
    ``settings.chains`` (None when no chain is configured), its series on ``metrics``."""
    return DepositWorker(settings, sessions, metrics) if settings.chains else None
