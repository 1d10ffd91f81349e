"""Async client of the node's own chain API (``scnode_chain_api``), one instance per chain.

The exchange talks to a chain daemon only through this client: deposit addresses, wallet
look-ups, idempotent sends and the events WebSocket (resumable by cursor). Errors are typed so
callers can tell "try again later" (`ChainApiRetryableError`: the API or its daemon is down or
warming up, a timeout, a 5xx) from "this request is wrong" (`ChainApiRequestError`: a 4xx, which
repeating will not fix).

The API key comes from a `scnode_core.keyfile.KeySource` on every request, so a key file
rewritten by the rotation job is followed without a restart; a 401 re-reads the file once and,
when it holds another key, repeats that request once with it (the API checks the key before it
acts, so a refused send was not made and its repetition, same idempotency key, sends once).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from scnode_core.keyfile import KeySource, key_source

log = logging.getLogger(__name__)


class ChainApiError(Exception):
    """Any failure talking to the chain API; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = message


class ChainApiRetryableError(ChainApiError):
    """Unreachable, timed out, 5xx or 429: the same request may succeed later."""


class ChainApiWarmingUpError(ChainApiRetryableError):
    """503 while the daemon behind the API starts (loading blocks, rescanning)."""


class ChainApiRequestError(ChainApiError):
    """A 4xx answer: the request itself is refused; repeating it will not help."""


class ChainApiAuthError(ChainApiRequestError):
    """401/403: the API key is unknown, revoked, or lacks the route's scope."""


class ChainApiNotFoundError(ChainApiRequestError):
    """404: e.g. a transaction the node's wallet does not know."""


class ChainApiConflictError(ChainApiRequestError):
    """409: an idempotency key reused for another send, a failed send, insufficient funds."""


@dataclass(frozen=True)
class DepositAddress:
    member_id: str
    address: str
    new: bool


@dataclass(frozen=True)
class SendResult:
    txid: str
    idempotency_key: str
    replayed: bool


@dataclass(frozen=True)
class ChainEvent:
    """One event of the chain API's journal. ``kind == "resync"`` (id = the cursor it was
    asked from) means the journal no longer reaches back that far, or restarted below the
    cursor (then the stream goes on from its new tip): catch up from the wallet."""

    id: int
    kind: str
    data: dict[str, Any]
    time: float = 0.0


@dataclass
class Backoff:
    """Reconnect delays: ``initial`` doubling up to ``maximum``; reset after a success."""

    initial: float = 0.2
    maximum: float = 10.0
    _next: float = field(default=0.0, init=False)

    def reset(self) -> None:
        self._next = 0.0

    def delay(self) -> float:
        self._next = self.initial if self._next == 0.0 else min(self._next * 2, self.maximum)
        return self._next


class ChainApiClient:
    """Typed async client of one chain API. Create inside a running loop or lazily on use."""

    def __init__(
        self,
        base_url: str,
        api_key: str | KeySource,
        *,
        timeout: float = 30.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key_source(api_key)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._backoff = backoff or Backoff()

    def __repr__(self) -> str:  # the key never appears
        return f"ChainApiClient({self.base_url!r})"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ChainApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- generic -----------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        *,
        params: Mapping[str, str | int] | None = None,
    ) -> Any:
        """Call ``method path`` and return the decoded JSON answer, or raise a typed error."""
        key = self._key.current()
        status, content = await self._call(method, path, key, json_body, params)
        if status == 401 and (renewed := self._renewed(key)) is not None:
            status, content = await self._call(method, path, renewed, json_body, params)
        try:
            payload = json.loads(content) if content else None
        except ValueError:
            payload = None
        if status < 400:
            if payload is None and content:
                raise ChainApiRetryableError(f"{method} {path}: HTTP {status}, not JSON", status)
            return payload
        detail = payload.get("detail") if isinstance(payload, dict) else None
        message = f"{method} {path}: HTTP {status}: {detail or content[:200]!r}"
        raise _error_for(status, message, str(detail or ""))

    async def _call(
        self,
        method: str,
        path: str,
        key: str,
        json_body: Any,
        params: Mapping[str, str | int] | None,
    ) -> tuple[int, bytes]:
        url = f"{self.base_url}{path}"
        try:
            async with self._client().request(
                method, url, json=json_body, params=params, headers=_auth(key)
            ) as response:
                return response.status, await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ChainApiRetryableError(
                f"{method} {path}: cannot reach {self.base_url}: {type(exc).__name__} {exc}"
            ) from exc

    def _renewed(self, refused: str) -> str | None:
        """After ``refused`` got a 401: re-read the key file; its key if it is another one."""
        fresh = self._key.refresh()
        if fresh == refused:
            return None
        log.warning("API %r refused the key; trying once more with the key file's new one", self)
        return fresh

    # -- routes ------------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/v1/status")
        return result

    async def new_address(self, member_id: int | str, fresh: bool) -> DepositAddress:
        """A deposit address labelled with the member: a new one (``fresh``) or the member's
        current unused one (a new one only when all of theirs have received something)."""
        result = await self.request(
            "POST",
            f"/v1/members/{_segment(member_id)}/addresses",
            params={"reuse_unused": "false" if fresh else "true"},
        )
        return DepositAddress(str(result["member_id"]), str(result["address"]), bool(result["new"]))

    async def member_addresses(self, member_id: int | str, min_conf: int = 1) -> dict[str, Any]:
        """The member's addresses with received/confirmed totals and the txids paying them."""
        result: dict[str, Any] = await self.request(
            "GET", f"/v1/members/{_segment(member_id)}/addresses", params={"min_conf": min_conf}
        )
        return result

    async def transaction(self, txid: str) -> dict[str, Any]:
        """Wallet view of a transaction (confirmations, blockhash, blockheight, details with
        vout/address/category/amount_sats); ChainApiNotFoundError when the wallet lacks it."""
        result: dict[str, Any] = await self.request("GET", f"/v1/transactions/{_segment(txid)}")
        return result

    async def balance(self) -> dict[str, int]:
        result = await self.request("GET", "/v1/wallet/balance")
        return {str(k): int(v) for k, v in result.items()}

    async def estimate_fee(self, target_blocks: int = 6) -> dict[str, Any]:
        """``feerate_sat_vb`` is an exact decimal string (or None when the node has no data)."""
        result: dict[str, Any] = await self.request(
            "GET", "/v1/fees/estimate", params={"target": target_blocks}
        )
        return result

    async def send(
        self,
        address: str,
        amount_sats: int,
        idempotency_key: str,
        *,
        fee_rate_sat_vb: int | None = None,
        subtract_fee: bool = False,
    ) -> SendResult:
        """Send at most once per ``idempotency_key``: repeating the same call after a timeout
        or a crash returns the first send (``replayed``); another request under the same key
        is a ChainApiConflictError."""
        if type(amount_sats) is not int:
            raise TypeError("amount_sats must be an int")
        body: dict[str, Any] = {
            "address": address,
            "amount_sats": amount_sats,
            "idempotency_key": idempotency_key,
            "subtract_fee": subtract_fee,
        }
        if fee_rate_sat_vb is not None:
            body["fee_rate_sat_vb"] = fee_rate_sat_vb
        result = await self.request("POST", "/v1/send", body)
        return SendResult(
            str(result["txid"]), str(result["idempotency_key"]), bool(result["replayed"])
        )

    async def recent_events(self, limit: int = 100) -> list[ChainEvent]:
        result = await self.request("GET", "/v1/events/recent", params={"limit": limit})
        return [_event(e) for e in result["events"]]

    async def tip_cursor(self) -> int:
        """Id of the newest journal event (0 when the journal is empty)."""
        recent = await self.recent_events(1)
        return recent[-1].id if recent else 0

    # -- events ------------------------------------------------------------------------------
    async def events(
        self, cursor: int | None = None, *, stop: asyncio.Event | None = None
    ) -> AsyncIterator[ChainEvent]:
        """Events after ``cursor`` (None: from now on), forever: on a lost connection it waits
        (backoff) and resumes after the last event it handed out, so nothing is skipped or
        repeated. Ends when ``stop`` is set. Auth failures (4401/4403) raise ChainApiAuthError."""
        while cursor is None:
            try:
                cursor = await self.tip_cursor()
            except ChainApiRetryableError as exc:
                log.warning("chain API %s: %s; retrying", self.base_url, exc)
                if await _sleep_or_stop(self._backoff.delay(), stop):
                    return
        reconnect = False
        while stop is None or not stop.is_set():
            url = f"{self.base_url}/v1/events/ws"
            key = self._key.current()
            try:
                if reconnect:
                    tip = await self.tip_cursor()
                    if tip < cursor:
                        # the API's journal restarted below our cursor (its state was lost):
                        # what happened before is only in the wallet now; its new journal is
                        # all news, so it is read from its start
                        yield ChainEvent(cursor, "resync", {"journal_tip": tip})
                        cursor = 0
                reconnect = True
                async with self._client().ws_connect(
                    url, params={"cursor": str(cursor)}, heartbeat=20.0, headers=_auth(key)
                ) as ws:
                    async for message in _messages(ws, stop):
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        raw = json.loads(message.data)
                        if raw.get("kind") == "resync":
                            yield ChainEvent(cursor, "resync", {"oldest": raw.get("oldest")})
                            continue
                        event = _event(raw)
                        self._backoff.reset()
                        cursor = event.id
                        yield event
                    code = ws.close_code
                if code == 4401 and self._renewed(key) is not None:
                    continue  # the rotated key: reconnect at once from the same cursor
                if code in (4401, 4403):
                    status = 401 if code == 4401 else 403
                    raise ChainApiAuthError(f"events WebSocket refused (close {code})", status)
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 401 and self._renewed(key) is not None:
                    continue
                if 400 <= exc.status < 500 and exc.status != 429:
                    reason = f"events WebSocket: HTTP {exc.status}"
                    raise _error_for(exc.status, reason, "") from exc
                log.warning("events WebSocket handshake failed: HTTP %s", exc.status)
            except (TimeoutError, aiohttp.ClientError, ChainApiRetryableError) as exc:
                log.warning("events WebSocket of %s lost: %s", self.base_url, exc)
            if stop is not None and stop.is_set():
                return
            if await _sleep_or_stop(self._backoff.delay(), stop):
                return


async def _messages(
    ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event | None
) -> AsyncIterator[aiohttp.WSMessage]:
    """The socket's messages, ending early when ``stop`` is set."""
    if stop is None:
        async for message in ws:
            yield message
        return
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            receive = asyncio.ensure_future(ws.receive())
            done, _ = await asyncio.wait({receive, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                return
            message = receive.result()
            if message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                return
            yield message
    finally:
        stopped.cancel()


async def _sleep_or_stop(seconds: float, stop: asyncio.Event | None) -> bool:
    """Sleep; True when ``stop`` was set meanwhile."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


def _event(raw: Mapping[str, Any]) -> ChainEvent:
    return ChainEvent(
        int(raw["id"]), str(raw["kind"]), dict(raw.get("data") or {}), float(raw.get("time", 0))
    )


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _segment(value: int | str) -> str:
    return quote(str(value), safe="")


def _error_for(status: int, message: str, detail: str) -> ChainApiError:
    if status == 503 and "starting" in detail:
        return ChainApiWarmingUpError(message, status)
    if status >= 500 or status in (408, 429):
        return ChainApiRetryableError(message, status)
    if status in (401, 403):
        return ChainApiAuthError(message, status)
    if status == 404:
        return ChainApiNotFoundError(message, status)
    if status == 409:
        return ChainApiConflictError(message, status)
    return ChainApiRequestError(message, status)
