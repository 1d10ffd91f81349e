"""The base of the exchange's request refusals: a reason for the member, a machine-readable
``code`` and the HTTP ``status`` the API answers with (withdrawals, Lightning payments)."""

from __future__ import annotations

from datetime import timedelta

# What an idempotency key may be made of (member-chosen, echoed back, logged).
IDEMPOTENCY_KEY_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"
)
# The window of the rolling daily limits.
DAY = timedelta(hours=24)


class RefusalError(Exception):
    """A refused request; subclasses set ``status`` and a default ``code``."""

    status = 400
    code = "error"

    def __init__(self, reason: str, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code
