"""Per-caller token buckets for the routes that move money or log in (DESIGN §5), on top of
the reverse proxy's limits: one member cannot flood the order queue."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, status


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """``rate`` requests per second per key, bursts up to ``burst``; refusals are 429 with
    ``Retry-After``."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def check(self, key: str) -> None:
        """Take one token for ``key`` or refuse."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            if len(self._buckets) > 100_000:  # forget idle callers rather than grow forever
                self._buckets = {key: bucket}
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens < 1:
            wait = (1 - bucket.tokens) / self.rate
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail="too many requests, slow down",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        bucket.tokens -= 1
