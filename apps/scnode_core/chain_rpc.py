"""Async JSON-RPC client of the apps for Bitcoin Core and its forks (AZCoin).

Speaks JSON-RPC 1.0 requests (what both Bitcoin Core 30 and AZCoin's v23 base accept) and
understands both response styles (1.1: ``result`` and ``error`` with HTTP 404/500 on errors;
2.0: HTTP 200 with only one of them). Transport trouble, a daemon that warms up (-28) and a
refused login are distinct exceptions, so an API can answer 503 with the reason instead of a
trace. Amounts are turned into integer sats with `to_sats` — never floats.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import aiohttp

RPC_IN_WARMUP = -28
SATS_PER_COIN = 100_000_000


class ChainRpcError(Exception):
    """The daemon answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, method: str) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.code = code
        self.message = message
        self.method = method


class ChainWarmingUpError(ChainRpcError):
    """The daemon is starting (-28): loading the block index, verifying blocks, rescanning."""


class ChainUnavailableError(Exception):
    """The daemon could not be reached or answered something that is not JSON-RPC."""


class ChainAuthError(ChainUnavailableError):
    """HTTP 401/403: the credentials are wrong or this user may not call the method."""


@dataclass(frozen=True)
class RpcEndpoint:
    """Where and as whom to call; the password never appears in ``repr``."""

    url: str
    user: str
    password: str
    wallet: str | None = None

    def __repr__(self) -> str:
        return f"RpcEndpoint(url={self.url!r}, user={self.user!r}, wallet={self.wallet!r})"


def to_sats(amount: Any) -> int:
    """Convert a JSON amount in coins (parsed as Decimal) to integer sats, refusing fractions."""
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    sats = value * SATS_PER_COIN
    if sats != sats.to_integral_value():
        raise ValueError(f"amount {value} has more than 8 decimals")
    return int(sats)


def from_sats(sats: int) -> Decimal:
    """Integer sats → an exact coin amount for an RPC parameter."""
    return (Decimal(sats) / SATS_PER_COIN).quantize(Decimal("0.00000001"))


def _json_default(value: object) -> object:
    # Bitcoin Core parses amounts given as strings exactly (AmountFromValue); a float would not.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


class ChainRpcClient:
    """One connection pool to one daemon; use one per wallet endpoint or pass ``wallet``.

    aiohttp rather than httpx: against the same daemon it sustains about seven times the
    calls per second under concurrency (benchmarks/chain_api.py), and every API request of
    the node's apps is one or more of these calls.
    """

    def __init__(
        self,
        endpoint: RpcEndpoint,
        timeout: float = 30.0,
        max_connections: int = 32,
    ) -> None:
        self._endpoint = endpoint
        self._ids = itertools.count(1)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_connections = max_connections
        credentials = f"{endpoint.user}:{endpoint.password}".encode()
        self._headers = {
            "Authorization": "Basic " + base64.b64encode(credentials).decode("ascii"),
            "Content-Type": "application/json",
        }
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop, as aiohttp requires.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=self._max_connections),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ChainRpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _url(self, wallet: str | None) -> str:
        wallet = wallet if wallet is not None else self._endpoint.wallet
        base = self._endpoint.url.rstrip("/")
        return f"{base}/wallet/{quote(wallet, safe='')}" if wallet is not None else f"{base}/"

    async def call(
        self,
        method: str,
        *params: Any,
        wallet: str | None = None,
        named: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call ``method`` with positional ``params`` or ``named`` arguments."""
        request_id = next(self._ids)
        args: Sequence[Any] | Mapping[str, Any] = dict(named) if named is not None else params
        body = json.dumps(
            {"jsonrpc": "1.0", "id": request_id, "method": method, "params": args},
            default=_json_default,
        )
        try:
            async with self._client().post(self._url(wallet), data=body) as response:
                status = response.status
                content = await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ChainUnavailableError(
                f"{method}: cannot reach {self._endpoint.url}: {type(exc).__name__} {exc}"
            ) from exc
        if status in (401, 403):
            raise ChainAuthError(
                f"{method}: the daemon refused the RPC user {self._endpoint.user!r} (HTTP {status})"
            )
        try:
            # Decimal keeps 8-decimal amounts exact all the way to to_sats().
            payload = json.loads(content, parse_float=Decimal)
        except ValueError:
            raise ChainUnavailableError(
                f"{method}: HTTP {status} without a JSON-RPC body"
            ) from None
        if not isinstance(payload, dict) or ("result" not in payload and "error" not in payload):
            raise ChainUnavailableError(f"{method}: HTTP {status}, not JSON-RPC")
        error = payload.get("error")
        if error:
            code = int(error.get("code", 0))
            message = str(error.get("message", ""))
            kind = ChainWarmingUpError if code == RPC_IN_WARMUP else ChainRpcError
            raise kind(code, message, method)
        return payload.get("result")
