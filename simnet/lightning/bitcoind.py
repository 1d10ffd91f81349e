"""A small bitcoind JSON-RPC client, used the way lightningd's bcli plugin uses bitcoin-cli."""

from __future__ import annotations

import base64
import itertools
import json
from pathlib import Path
from typing import Any

import aiohttp

DEFAULT_RPCPORT = {
    "bitcoin": 8332,
    "testnet": 18332,
    "testnet4": 48332,
    "signet": 38332,
    "regtest": 18443,
}
COOKIE_SUBDIR = {
    "bitcoin": "",
    "testnet": "testnet3",
    "testnet4": "testnet4",
    "signet": "signet",
    "regtest": "regtest",
}


class BitcoindError(Exception):
    """An error object returned by bitcoind."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class BitcoindClient:
    """JSON-RPC 1.0 over HTTP with Basic auth (rpcuser/rpcpassword or the cookie file)."""

    def __init__(
        self,
        network: str,
        host: str | None,
        port: str | None,
        user: str | None,
        password: str | None,
        datadir: str | None,
    ) -> None:
        self.url = f"http://{host or '127.0.0.1'}:{port or DEFAULT_RPCPORT.get(network, 8332)}/"
        self.user = user
        self.password = password
        self.cookie = None
        if password is None:
            base = Path(datadir).expanduser() if datadir else Path.home() / ".bitcoin"
            self.cookie = base / COOKIE_SUBDIR.get(network, "") / ".cookie"
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    def _auth(self) -> str:
        if self.cookie is not None and self.cookie.exists():
            creds = self.cookie.read_text().strip()
        else:
            creds = f"{self.user or ''}:{self.password or ''}"
        return "Basic " + base64.b64encode(creds.encode()).decode()

    async def call(self, method: str, *params: Any) -> Any:
        """Call one method; raises BitcoindError or OSError/aiohttp errors."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        body = {"jsonrpc": "1.0", "id": next(self._ids), "method": method, "params": list(params)}
        async with self._session.post(
            self.url,
            data=json.dumps(body),
            headers={"Authorization": self._auth(), "Content-Type": "application/json"},
        ) as resp:
            if resp.status == 401:
                raise BitcoindError(-401, "Incorrect rpcuser or rpcpassword")
            text = await resp.text()
        reply = json.loads(text)
        if reply.get("error"):
            raise BitcoindError(int(reply["error"]["code"]), str(reply["error"]["message"]))
        return reply["result"]

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
