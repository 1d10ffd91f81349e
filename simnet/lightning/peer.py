"""The stand-ins' peer link: newline-delimited JSON over TCP between simulated nodes.

Not BOLT8/BOLT1 (no noise handshake, no real channel state machine): two stand-ins agree on
channel opens, HTLCs, balance shifts and closes with request/reply messages, so both sides keep
the same channel balances. Real lightningd peers cannot connect to it (documented divergence).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[["PeerLink", dict[str, Any]], Awaitable[dict[str, Any] | None]]


class PeerError(Exception):
    """The peer went away or answered with an error."""


class PeerLink:
    """One connection to another stand-in; requests carry `rid`, replies `re`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handler: Handler,
        direction: str,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.handler = handler
        self.direction = direction
        self.peer_id = ""
        self.remote_addr: tuple[str, int] = writer.get_extra_info("peername")[:2]
        self.listen_port = 0
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()

    async def send(self, msg: dict[str, Any]) -> None:
        """Send one message without waiting for a reply."""
        self.writer.write(json.dumps(msg).encode() + b"\n")
        await self.writer.drain()

    async def request(self, msg: dict[str, Any], wait: float = 120) -> dict[str, Any]:
        """Send a request and wait for its reply."""
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            await self.send({**msg, "rid": rid})
            return await asyncio.wait_for(fut, wait)
        except (ConnectionError, OSError) as exc:
            raise PeerError(str(exc)) from exc
        finally:
            self._pending.pop(rid, None)

    async def _serve_one(self, msg: dict[str, Any]) -> None:
        reply = await self.handler(self, msg)
        if "rid" in msg:
            with contextlib.suppress(ConnectionError, OSError):
                await self.send({**(reply or {}), "re": msg["rid"]})

    async def run(self) -> None:
        """Read messages until the connection closes."""
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    break
                msg = json.loads(line)
                if "re" in msg:
                    fut = self._pending.get(int(msg["re"]))
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                    continue
                task = asyncio.create_task(self._serve_one(msg))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(PeerError("peer disconnected"))
            self.writer.close()
            self.closed.set()

    def close(self) -> None:
        """Drop the connection."""
        self.writer.close()
