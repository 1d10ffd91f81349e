"""scnode_core.eventjournal: exactly-once publishing by dedupe key, resume from a cursor, and
the events WebSocket (keys, scopes, resync after pruning)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import sqlite3
from pathlib import Path

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from scnode_core.apikeys import ApiKeyStore, generate
from scnode_core.eventjournal import EventBus, EventJournal, serve_websocket
from scnode_core.keyring import KeyRing


def journal(tmp_path: Path) -> EventJournal:
    db = sqlite3.connect(tmp_path / "j.sqlite", isolation_level=None, check_same_thread=False)
    return EventJournal(db)


def test_a_dedupe_key_publishes_once_even_after_reopening(tmp_path: Path) -> None:
    bus = EventBus(journal(tmp_path))
    assert bus.publish("invoice_paid", {"n": 1}, dedupe="invoice_paid:h1") is not None
    assert bus.publish("invoice_paid", {"n": 1}, dedupe="invoice_paid:h1") is None
    again = EventBus(journal(tmp_path))  # a restarted API sees the same fact again
    assert again.publish("invoice_paid", {"n": 1}, dedupe="invoice_paid:h1") is None
    assert again.publish("warning", {}) is not None  # no key: always journalled
    assert [e.kind for e in again.journal.recent(10)] == ["invoice_paid", "warning"]


def test_a_journal_without_dedupe_keys_is_taken_over_with_its_ids(tmp_path: Path) -> None:
    """The chain API's events table (no dedupe column) keeps its events and ids."""
    db = sqlite3.connect(tmp_path / "old.sqlite", isolation_level=None)
    db.executescript(
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, "
        "kind TEXT NOT NULL, data TEXT NOT NULL);"
        "INSERT INTO events (created, kind, data) VALUES (1, 'rawtx', '{}');"
    )
    taken_over = EventJournal(db)
    assert [(e.id, e.kind) for e in taken_over.after(0)] == [(1, "rawtx")]
    assert taken_over.append("block", {}, dedupe="block:1") is not None
    assert taken_over.append("block", {}, dedupe="block:1") is None
    assert EventJournal(db).last_id() == 2


def test_a_stream_replays_after_the_cursor_then_follows_live(tmp_path: Path) -> None:
    bus = EventBus(journal(tmp_path))
    for i in range(3):
        bus.publish("e", {"i": i})

    async def run() -> list[int]:
        seen: list[int] = []
        stream = bus.stream(1).__aiter__()
        seen.append((await stream.__anext__()).data["i"])
        seen.append((await stream.__anext__()).data["i"])
        bus.publish("e", {"i": 3})
        seen.append((await stream.__anext__()).data["i"])
        await stream.aclose()  # type: ignore[attr-defined]
        return seen

    assert asyncio.run(run()) == [1, 2, 3]
    assert bus.subscriber_count == 0


def test_websocket_needs_a_key_with_the_scope_and_says_resync_after_pruning(
    tmp_path: Path,
) -> None:
    read = generate({"read"})
    other = generate({"pay"})
    keys_file = tmp_path / "keys.json"
    ApiKeyStore([read.record, other.record]).save(keys_file)
    keys = KeyRing(keys_file)
    bus = EventBus(journal(tmp_path))
    for i in range(5):
        bus.publish("e", {"i": i})
    bus.journal.prune(2)  # only events 4 and 5 remain
    app = FastAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, cursor: int | None = None) -> None:
        await serve_websocket(websocket, keys, bus, "read", cursor)

    client = TestClient(app)
    for headers, code in (({}, 4401), ({"X-API-Key": other.token}, 4403)):
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/ws", headers=headers) as socket,
        ):
            socket.receive_json()
        assert refused.value.code == code
    # Starlette's test client cancels the app right after sending the close; an app still
    # tidying up its tasks then ends cancelled, which the client re-raises on exit.
    with (
        contextlib.suppress(concurrent.futures.CancelledError),
        client.websocket_connect(
            "/ws?cursor=1", headers={"Authorization": f"Bearer {read.token}"}
        ) as socket,
    ):
        assert socket.receive_json() == {"kind": "resync", "oldest": 4}
        assert [socket.receive_json()["data"]["i"] for _ in range(2)] == [3, 4]


def test_keyring_follows_the_keys_file(tmp_path: Path) -> None:
    first, second = generate({"read"}), generate({"read"})
    path = tmp_path / "keys.json"
    ApiKeyStore([first.record]).save(path)
    ring = KeyRing(path)
    assert ring().authenticate(first.token) is not None
    ApiKeyStore([second.record]).save(path)
    os.utime(path, (1, 1))  # a different mtime, whatever the clock resolution
    assert ring().authenticate(first.token) is None
    assert ring().authenticate(second.token) is not None
