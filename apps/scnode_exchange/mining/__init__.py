"""Mining in the exchange: the worker registry (which member a worker's shares belong to), the
payout split (one balanced journal entry per mature pool payout) and the member/owner routes
(``api.build_router``), and the watcher that splits mature pool rewards (``settings.
build_worker``, ``python -m scnode_exchange.mining``). See README.md in this package for the
scheme."""

from __future__ import annotations

from scnode_exchange.mining.service import (
    COINBASE_MATURITY,
    ImmaturePayoutError,
    MiningConfig,
    MiningError,
    MiningService,
    PayoutConflictError,
    PayoutView,
    PoolPayout,
    UnknownWorkerError,
    WindowOverlapError,
    WorkerTakenError,
)
from scnode_exchange.mining.split import Split, split_payout

__all__ = [
    "COINBASE_MATURITY",
    "ImmaturePayoutError",
    "MiningConfig",
    "MiningError",
    "MiningService",
    "PayoutConflictError",
    "PayoutView",
    "PoolPayout",
    "Split",
    "UnknownWorkerError",
    "WindowOverlapError",
    "WorkerTakenError",
    "split_payout",
]
