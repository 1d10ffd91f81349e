"""A read cache whose entries the chain watcher invalidates.

An entry is served only while the *change mark* it was read under still holds (the watcher
moves the mark on every ZMQ signal that may change the answer) and for at most ``ttl``
seconds — the lifetime only bounds how stale an answer can get if ZMQ messages were lost
without the watcher noticing. Misses of one key while a read of it is in flight wait for that
read (single flight), so a burst of identical requests costs the daemon one call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
Mark = Hashable


class MarkedCache(Generic[T]):
    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: dict[Hashable, tuple[Mark, float, T]] = {}
        self._inflight: dict[Hashable, asyncio.Future[T]] = {}

    async def get(
        self, key: Hashable, mark: Callable[[], Mark | None], load: Callable[[], Awaitable[T]]
    ) -> T:
        """The value of ``key``: cached if still valid, else ``load()``-ed (and cached when the
        mark did not move during the load). ``mark()`` returning None means "cannot tell":
        nothing is cached."""
        current = mark() if self.ttl > 0 else None
        if current is None:
            return await load()
        loop = asyncio.get_running_loop()
        entry = self._entries.get(key)
        if entry is not None and entry[0] == current and entry[1] > loop.time():
            self.hits += 1
            return entry[2]
        inflight = self._inflight.get(key)
        if inflight is not None:
            self.hits += 1
            try:
                return await asyncio.shield(inflight)
            except asyncio.CancelledError:
                if not inflight.cancelled():
                    raise  # this request itself was cancelled
                return await load()  # the leading request's client went away
        self.misses += 1
        future: asyncio.Future[T] = loop.create_future()
        self._inflight[key] = future
        try:
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here; the waiters re-raise it
            raise
        else:
            future.set_result(value)
            # Only what was read under a mark that still holds: a change during the read may
            # or may not be in the answer.
            if mark() == current:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[key] = (current, loop.time() + self.ttl, value)
            return value
        finally:
            del self._inflight[key]
