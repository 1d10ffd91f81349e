"""Withdrawals: requests with limits and fees, reserved on the ledger at once, sent exactly
once by the worker through the chain API, followed to confirmation (see README.md)."""

from scnode_exchange.withdrawals.models import Withdrawal, WithdrawalEvent
from scnode_exchange.withdrawals.service import (
    IdempotencyKeyReusedError,
    InvalidTransitionError,
    WithdrawalError,
    WithdrawalInfo,
    WithdrawalNotFoundError,
    WithdrawalRefusedError,
    WithdrawalService,
)
from scnode_exchange.withdrawals.settings import WithdrawalPolicy, WithdrawalSettings
from scnode_exchange.withdrawals.worker import WithdrawalWorker

__all__ = [
    "IdempotencyKeyReusedError",
    "InvalidTransitionError",
    "Withdrawal",
    "WithdrawalError",
    "WithdrawalEvent",
    "WithdrawalInfo",
    "WithdrawalNotFoundError",
    "WithdrawalPolicy",
    "WithdrawalRefusedError",
    "WithdrawalService",
    "WithdrawalSettings",
    "WithdrawalWorker",
]
