"""Why a ledger operation was refused (the transaction is left for the caller to roll back)."""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every refusal."""


class UnbalancedEntryError(LedgerError):
    """The postings of one asset do not sum to zero (or an entry has fewer than two legs)."""


class InvalidAmountError(LedgerError):
    """An amount is not a positive integer where one is required."""


class InsufficientFundsError(LedgerError):
    """A member's available balance (balance minus holds) does not cover a debit."""


class MemberFrozenError(LedgerError):
    """A frozen member's funds may not be moved out or reserved."""


class IdempotencyConflictError(LedgerError):
    """A reference was reused for a different movement."""


class UnknownAccountError(LedgerError):
    """No such member, asset or account."""


class HoldClosedError(LedgerError):
    """The hold is already closed or smaller than the amount asked for."""
