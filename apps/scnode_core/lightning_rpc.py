"""Async client of the apps for Core Lightning's JSON-RPC on its unix socket.

pyln-client's `UnixDomainSocketRpc` speaks the framing (one connection per call, as upstream's
own client does); calls run in worker threads so the event loop never blocks on lightningd.
It decodes plain JSON, so every ``*_msat`` field stays an integer (pyln's `LightningRpc` would
turn them into `Millisatoshi` objects). Errors are two kinds: lightningd answered with an
error object (`LightningRpcError`, with its flat extra fields) or it could not be reached
(`LightningUnavailableError`) — an API answers 503 for the latter, never a trace.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pyln.client import RpcError
from pyln.client.lightning import UnixDomainSocketRpc

log = logging.getLogger(__name__)


class LightningRpcError(Exception):
    """lightningd answered with an error object (flat: plugins' extra fields sit beside
    ``code`` and ``message``; a ``data`` object is kept too when present)."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        self.method = method
        self.code = int(error.get("code", 0))
        self.message = str(error.get("message", ""))
        self.error = error
        super().__init__(f"{method}: {self.message} (code {self.code})")

    @property
    def fields(self) -> dict[str, Any]:
        """The extra fields: the ``data`` object if any, merged with the flat ones."""
        extra = {k: v for k, v in self.error.items() if k not in ("code", "message", "data")}
        data = self.error.get("data")
        if isinstance(data, dict):
            return {**data, **extra}
        return extra


class LightningUnavailableError(Exception):
    """The socket is missing, refused the connection or closed it without an answer."""


class LightningClient:
    """Calls on ``<lightning-dir>/<network>/lightning-rpc``.

    Its own thread pool: a payment call can wait a minute for the network, and a few of them
    must not starve status calls of the event loop's small default pool (cpu count + 4)."""

    def __init__(self, socket_path: Path, timeout: float = 120.0, max_calls: int = 32) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._rpc = UnixDomainSocketRpc(str(socket_path), logger=log, caller_name="scnode")
        self._pool = ThreadPoolExecutor(max_calls, thread_name_prefix="lightning-rpc")

    def close(self) -> None:
        """Let running calls finish in their threads; take no new ones."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def call(self, method: str, **params: Any) -> Any:
        """Call ``method`` with named parameters (None values are left out)."""
        payload = {k: v for k, v in params.items() if v is not None}
        try:
            loop = asyncio.get_running_loop()
            call = functools.partial(self._rpc.call, method, payload)
            return await asyncio.wait_for(loop.run_in_executor(self._pool, call), self.timeout)
        except RpcError as exc:
            if isinstance(exc.error, dict):
                raise LightningRpcError(method, exc.error) from None
            # pyln reports a connection closed before the answer as a string "error"
            raise LightningUnavailableError(f"{method}: {exc.error}") from None
        except (OSError, TimeoutError) as exc:
            raise LightningUnavailableError(
                f"{method}: cannot reach lightningd at {self.socket_path}: "
                f"{type(exc).__name__} {exc}"
            ) from exc
