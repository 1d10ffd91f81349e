"""A node API's event journal and its live fan-out.

Every event is first written to a SQLite table (so it has an id a client can resume from),
then handed to the live subscribers. An event may carry a ``dedupe`` key: a second event with
the same key is not journalled again, which makes publishing from a reconciling loop (that may
see the same fact after a restart, or both from a push message and a poll) exactly-once.
`serve_websocket` is the ``/v1/events/ws`` endpoint every API serves the same way: key in the
``Authorization: Bearer`` or ``X-API-Key`` header, ``?cursor=<last id seen>`` to resume.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from scnode_core.apikeys import ApiKeyStore

# The table the chain API has always had; ``dedupe`` is added to an existing one, so an API
# whose state file predates it can switch to this journal without losing its cursor ids.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Event:
    id: int
    created: float
    kind: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.created, "kind": self.kind, "data": self.data}


class EventJournal:
    """The ``events`` table in a SQLite connection the caller owns (autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(events)")}
        if "dedupe" not in columns:
            self._db.execute("ALTER TABLE events ADD COLUMN dedupe TEXT")
        self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS events_dedupe ON events (dedupe)")

    def append(self, kind: str, data: dict[str, Any], dedupe: str | None = None) -> Event | None:
        """Journal an event; None when an event with the same ``dedupe`` key exists."""
        created = time.time()
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO events (created, kind, data, dedupe) VALUES (?, ?, ?, ?)",
            (created, kind, json.dumps(data, separators=(",", ":")), dedupe),
        )
        if cursor.rowcount == 0:
            return None
        assert cursor.lastrowid is not None
        return Event(cursor.lastrowid, created, kind, data)

    def after(self, cursor: int, limit: int = 1000) -> list[Event]:
        rows = self._db.execute(
            "SELECT id, created, kind, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (cursor, limit),
        ).fetchall()
        return [Event(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def recent(self, limit: int) -> list[Event]:
        rows = self._db.execute(
            "SELECT id, created, kind, data FROM events ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [Event(r[0], r[1], r[2], json.loads(r[3])) for r in reversed(rows)]

    def last_id(self) -> int:
        row = self._db.execute("SELECT MAX(id) FROM events").fetchone()
        return int(row[0] or 0)

    def oldest_id(self) -> int:
        row = self._db.execute("SELECT MIN(id) FROM events").fetchone()
        return int(row[0] or 0)

    def prune(self, keep: int) -> None:
        """Forget all but the newest ``keep`` events (their dedupe keys go with them)."""
        self._db.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (keep,))


class EventBus:
    """Journal + live queues. A slow subscriber is cut off rather than slowing everyone."""

    def __init__(self, journal: EventJournal, queue_size: int = 10_000) -> None:
        self.journal = journal
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Event | None]] = set()
        self.listeners: list[Callable[[Event], None]] = []

    def publish(self, kind: str, data: dict[str, Any], dedupe: str | None = None) -> Event | None:
        """Journal and fan out; None (and nothing sent) when ``dedupe`` was seen before."""
        event = self.journal.append(kind, data, dedupe)
        if event is None:
            return None
        for listener in self.listeners:
            listener(event)
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
                batch = self.journal.after(last)
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


def websocket_token(websocket: WebSocket) -> str | None:
    """The API key a WebSocket client presented in its handshake headers."""
    auth = websocket.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return websocket.headers.get("x-api-key")


async def serve_websocket(
    websocket: WebSocket,
    keys: Callable[[], ApiKeyStore],
    bus: EventBus,
    scope: str,
    cursor: int | None,
) -> None:
    """Authenticate (close 4401 without a valid key, 4403 without ``scope``), then stream events
    after ``cursor`` (default: from now on). A cursor older than the journal's first event gets
    ``{"kind": "resync", "oldest": <id>}`` first: events were pruned, the client must resync."""
    token = websocket_token(websocket)
    principal = keys().authenticate(token) if token else None
    if principal is None or scope not in principal.scopes:
        await websocket.close(code=4401 if principal is None else 4403)
        return
    await websocket.accept()
    start = cursor if cursor is not None else bus.journal.last_id()
    oldest = bus.journal.oldest_id()
    if cursor is not None and oldest and cursor < oldest - 1:
        await websocket.send_json({"kind": "resync", "oldest": oldest})

    async def send_events() -> None:
        async for event in bus.stream(start):
            await websocket.send_json(event.to_json())

    async def until_closed() -> None:
        # Reading is how a close from the client is noticed while no event is due; without
        # it the client's close handshake would wait for its timeout.
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    tasks = [asyncio.ensure_future(send_events()), asyncio.ensure_future(until_closed())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = None if task.cancelled() else task.exception()
            # a client gone mid-send is the normal end, anything else is a bug to see
            if error is not None and not isinstance(error, WebSocketDisconnect | RuntimeError):
                raise error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
