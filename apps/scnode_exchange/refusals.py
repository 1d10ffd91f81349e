"""The base of the exchange's request refusals: a reason for the member, a machine-readable
``code`` and the HTTP ``status`` the API answers with (withdrawals, Lightning payments)."""

from __future__ import annotations

from datetime import timedelta

from fastapi.responses import JSONResponse

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


class IdempotencyKeyMissingError(RefusalError):
    """A money request without an idempotency key, or with two different ones."""

    status = 422
    code = "idempotency_key_required"


def idempotency_key(field: str | None, header: str | None) -> str:
    """The request's idempotency key: the body field or the ``Idempotency-Key`` header (the
    same one when both are given)."""
    key = field or header
    if key is None:
        raise IdempotencyKeyMissingError(
            "an idempotency key is required (field or Idempotency-Key header)"
        )
    if field and header and field != header:
        raise IdempotencyKeyMissingError("field and header idempotency keys differ", "bad_request")
    return key


def refusal_response(exc: RefusalError) -> JSONResponse:
    """The API's answer to a refusal: ``{detail, code}`` with its status."""
    return JSONResponse({"detail": exc.reason, "code": exc.code}, status_code=exc.status)
