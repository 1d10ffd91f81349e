"""Event fan-out: every event is first written to the journal (so it has an id a client can
resume from), then handed to the live subscribers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from scnode_chain_api.store import ChainApiStore, Event


class EventBus:
    """Journal + live queues. A slow subscriber is cut off rather than slowing everyone."""

    def __init__(self, store: ChainApiStore, queue_size: int = 10_000) -> None:
        self._store = store
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Event | None]] = set()

    def publish(self, kind: str, data: dict[str, Any]) -> Event:
        event = self._store.append_event(kind, data)
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # The client fell too far behind: end its stream (it reconnects with its cursor
                # and replays from the journal) instead of holding everyone back.
                self._subscribers.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)
        return event

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def stream(self, cursor: int) -> AsyncIterator[Event]:
        """Events after ``cursor`` from the journal, then live ones, without gaps or repeats."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            last = cursor
            while True:
                batch = self._store.events_after(last)
                if not batch:
                    break
                for event in batch:
                    yield event
                    last = event.id
            while True:
                item = await queue.get()
                if item is None:
                    return
                if item.id > last:
                    last = item.id
                    yield item
        finally:
            self._subscribers.discard(queue)
