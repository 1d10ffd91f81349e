"""Fan-out of market messages to WebSocket subscribers.

Every message carries the market's sequence number after the change (``seq``) and the ``seq``
of the previous message on the same channel (``prev_seq``). A client keeps the last ``seq``
it applied (starting from the snapshot's): a message whose ``prev_seq`` is greater than that
means one was missed — fetch a new snapshot. A subscriber that cannot keep up is dropped (its
socket is closed) rather than silently skipped, so it resyncs instead of drifting.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

QUEUE_LIMIT = 1000


@dataclass(eq=False)
class Subscription:
    """One subscriber's queue; ``overflowed`` once it fell behind and must resync."""

    channel: str
    market: str
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    overflowed: bool = False


class MarketFeed:
    """Channels (``orders``, ``trades``, ``candles:<interval>``, ``stats``) per market."""

    def __init__(self) -> None:
        self._subscribers: dict[tuple[str, str], set[Subscription]] = defaultdict(set)
        self._last_seq: dict[tuple[str, str], int] = {}

    def subscribe(self, channel: str, market: str) -> Subscription:
        """Start receiving; take the snapshot *after* subscribing so nothing falls between."""
        sub = Subscription(channel, market)
        self._subscribers[(channel, market)].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop receiving."""
        self._subscribers[(sub.channel, sub.market)].discard(sub)

    def has_subscribers(self, channel: str, market: str) -> bool:
        """Whether anyone listens (lets the publisher skip work nobody reads)."""
        return bool(self._subscribers.get((channel, market)))

    def subscriber_count(self) -> int:
        """All subscriptions (metrics)."""
        return sum(len(s) for s in self._subscribers.values())

    def publish(self, channel: str, market: str, seq: int, message: dict[str, Any]) -> None:
        """Send ``message`` (stamped with ``seq``/``prev_seq``) to every subscriber."""
        key = (channel, market)
        stamped = {**message, "seq": seq, "prev_seq": self._last_seq.get(key, 0)}
        self._last_seq[key] = seq
        for sub in list(self._subscribers.get(key, ())):
            try:
                sub.queue.put_nowait(stamped)
            except asyncio.QueueFull:
                # too far behind: replace its backlog by one "resync" and stop feeding it
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                sub.queue.put_nowait({"type": "resync", "seq": seq, "reason": "too slow"})
                sub.overflowed = True
                self.unsubscribe(sub)
