"""The exchange as the dashboard sees it: a trusted client with its ``dashboard``-scoped API
key asks for a member session token (``POST /api/dashboard/sessions``), then calls the member
API with that token, exactly as any member client does. The token lives in the dashboard's
server-side session row and never reaches the browser.

The ``dashboard`` key comes from a `scnode_core.keyfile.KeySource` on every request, so a key
file rewritten by the rotation job is followed without a restart; a 401 re-reads the file once
and, if it holds another key, repeats that one request with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from scnode_core.keyfile import KeySource, key_source


class ExchangeError(Exception):
    """The exchange refused or could not be reached; ``status`` is its HTTP status (0: no
    answer)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class MemberToken:
    token: str
    member_id: int
    frozen: bool
    expires_at: int


class ExchangeClient:
    """One HTTP connection pool to the exchange for every member."""

    def __init__(
        self,
        base_url: str,
        api_key: str | KeySource,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)
        self._key = key_source(api_key)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        if token:
            reply = await self._send(method, path, {"Authorization": f"Bearer {token}"}, kwargs)
        else:
            key = self._key.current()
            reply = await self._send(method, path, {"X-API-Key": key}, kwargs)
            if reply.status_code == 401 and (fresh := self._key.refresh()) != key:
                reply = await self._send(method, path, {"X-API-Key": fresh}, kwargs)
        if reply.status_code >= 400:
            try:
                detail = str(reply.json().get("detail", reply.text))
            except ValueError:
                detail = reply.text[:200]
            raise ExchangeError(reply.status_code, detail)
        return reply

    async def _send(
        self, method: str, path: str, headers: dict[str, str], kwargs: dict[str, Any]
    ) -> httpx.Response:
        try:
            return await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ExchangeError(0, f"the exchange is not reachable: {exc}") from exc

    async def member_token(self, handle: str) -> MemberToken:
        """A member session token for ``handle`` (404 → ``ExchangeError`` status 404)."""
        data = (await self._call("POST", "/api/dashboard/sessions", json={"handle": handle})).json()
        return MemberToken(
            str(data["token"]), int(data["member_id"]), bool(data["frozen"]),
            int(data["expires_at"]),
        )  # fmt: skip

    async def get(self, token: str, path: str, **params: Any) -> Any:
        """A member route's JSON answer."""
        return (await self._call("GET", path, token, params=params)).json()

    async def post(self, token: str, path: str, body: dict[str, Any]) -> Any:
        """A member route's JSON answer to a POST."""
        return (await self._call("POST", path, token, json=body)).json()

    async def delete(self, token: str, path: str) -> Any:
        """A member route's JSON answer to a DELETE (None when it has no body)."""
        reply = await self._call("DELETE", path, token)
        return reply.json() if reply.content else None

    async def stream(self, token: str, path: str, **params: Any) -> AsyncIterator[bytes]:
        """A member route's body in chunks (the CSV export)."""
        request = self._http.build_request(
            "GET", path, params=params, headers={"Authorization": f"Bearer {token}"}
        )
        try:
            reply = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise ExchangeError(0, f"the exchange is not reachable: {exc}") from exc
        if reply.status_code >= 400:
            await reply.aclose()
            raise ExchangeError(reply.status_code, "export refused")
        return _chunks(reply)


async def _chunks(reply: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in reply.aiter_bytes():
            yield chunk
    finally:
        await reply.aclose()
