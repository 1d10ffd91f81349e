# Copyright (c) 2026 Satoshiware SC Node developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one JSON-RPC client the collection's modules use to talk to Bitcoin Core and AZCoin.

Private to this collection (leading underscore): its interface may change between releases.

What it has to get right (see the project's PROTOCOLS.md and the recorded transcripts):

* Bitcoin Core answers JSON-RPC 1.x requests with both ``result`` and ``error`` and an HTTP
  status that depends on the error (200 success, 400 for -32600, 404 for -32601, 500 for any
  other RPC error). JSON-RPC 2.0 requests (Bitcoin Core 28+) get HTTP 200 and only one of
  ``result``/``error``. AZCoin (a v23 fork) speaks 1.x only, so 1.0 is the default here.
* Wrong or missing credentials give HTTP 401 with an *empty* body; an ``rpcwhitelist`` denial
  gives HTTP 403. Neither is a JSON-RPC error, both are reported as :class:`ChainRpcAuthError`.
* Amounts are JSON numbers with 8 decimals. They are parsed as :class:`decimal.Decimal` (never
  ``float``) and turned into integer satoshis with :func:`amount_to_sats`.
* The password or cookie never appears in an error message.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlsplit

SATS_PER_COIN = 100_000_000

# Bitcoin Core error codes a caller commonly branches on (src/rpc/protocol.h).
RPC_MISC_ERROR = -1
RPC_TYPE_ERROR = -3
RPC_WALLET_ERROR = -4
RPC_INVALID_ADDRESS_OR_KEY = -5
RPC_WALLET_INSUFFICIENT_FUNDS = -6
RPC_INVALID_PARAMETER = -8
RPC_WALLET_NOT_FOUND = -18
RPC_WALLET_NOT_SPECIFIED = -19
RPC_IN_WARMUP = -28
RPC_INVALID_REQUEST = -32600
RPC_METHOD_NOT_FOUND = -32601
RPC_PARSE_ERROR = -32700

JSONRPC_VERSIONS = ("1.0", "2.0")
DEFAULT_URL = "http://127.0.0.1:8332"
DEFAULT_TIMEOUT = 30.0

# Bodies of unexpected answers are quoted in errors, shortened to keep messages readable.
_MAX_QUOTED_BODY = 200


class ChainRpcError(Exception):
    """Base of every error this client raises.

    ``code`` is the JSON-RPC error code when the node sent one, else ``None``; ``http_status``
    is the HTTP status of the answer when there was one.
    """

    def __init__(self, message: str, code: int | None = None, http_status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status

    def __str__(self) -> str:
        if self.code is not None:
            return "RPC error %d: %s" % (self.code, self.message)
        return self.message


class ChainRpcResponseError(ChainRpcError):
    """The node answered with a JSON-RPC error object (``code`` is always set)."""


class ChainRpcAuthError(ChainRpcError):
    """HTTP 401 (wrong or missing credentials) or 403 (method not in ``rpcwhitelist``)."""


class ChainRpcConnectionError(ChainRpcError):
    """The node could not be reached, or it answered something that is not JSON-RPC."""


class ChainRpcConfigError(ChainRpcError):
    """The client was given unusable settings (bad URL, unreadable cookie file, ...)."""


def amount_to_sats(amount: Any) -> int:
    """Convert a coin amount as the node sends it (8 decimals) to integer satoshis.

    Accepts ``Decimal``, ``int`` and decimal strings. ``float`` is refused: a float has
    already lost the exact value, so the caller must parse JSON with ``parse_float=Decimal``
    (this client does). ``bool`` is refused too, although Python treats it as an int.
    Raises ``ValueError`` for anything that is not a whole number of satoshis.
    """
    if isinstance(amount, (bool, float)):
        raise ValueError("amount must be a Decimal, int or str, not %s" % type(amount).__name__)
    if isinstance(amount, int):
        return amount * SATS_PER_COIN
    if isinstance(amount, str):
        try:
            amount = Decimal(amount.strip())
        except InvalidOperation:
            raise ValueError("not a decimal amount: %r" % amount) from None
    if not isinstance(amount, Decimal):
        raise ValueError("amount must be a Decimal, int or str, not %s" % type(amount).__name__)
    if not amount.is_finite():
        raise ValueError("amount is not finite: %s" % amount)
    sats = amount * SATS_PER_COIN
    if sats != sats.to_integral_value():
        raise ValueError("amount has more than 8 decimals: %s" % amount)
    return int(sats)


def sats_to_amount(sats: int) -> Decimal:
    """Convert integer satoshis to the coin amount a node expects, exactly (8 decimals)."""
    if isinstance(sats, bool) or not isinstance(sats, int):
        raise ValueError("sats must be an int, not %s" % type(sats).__name__)
    return (Decimal(sats) / SATS_PER_COIN).quantize(Decimal("0.00000001"))


def read_cookie(path: str) -> tuple[str, str]:
    """Read a ``.cookie`` file (``__cookie__:<hex>``) into a (user, password) pair."""
    try:
        with open(path, encoding="utf-8") as cookie:
            content = cookie.read().strip()
    except OSError as exc:
        raise ChainRpcConfigError(
            "cannot read the RPC cookie file %s: %s" % (path, exc.strerror or exc)
        ) from None
    user, sep, password = content.partition(":")
    if not sep or not user or not password:
        raise ChainRpcConfigError("the RPC cookie file %s is not in user:password form" % path)
    return user, password


def _quote_body(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    if len(text) > _MAX_QUOTED_BODY:
        text = text[:_MAX_QUOTED_BODY] + "..."
    return text or "(empty body)"


class ChainRpcClient:
    """A small synchronous JSON-RPC client for one Bitcoin Core or AZCoin node.

    Credentials: ``user`` and ``password`` (an ``rpcauth`` user), or ``cookie_file`` (read on
    every call, because the node writes a new cookie each time it starts). ``wallet`` selects
    the ``/wallet/<name>`` endpoint for every call unless a call names its own wallet.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        user: str | None = None,
        password: str | None = None,
        cookie_file: str | None = None,
        wallet: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        jsonrpc_version: str = "1.0",
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ChainRpcConfigError("rpc url must be http:// or https:// with a host: %s" % url)
        if parts.username is not None or parts.password is not None:
            # Never echo the URL here: it carries the secret.
            raise ChainRpcConfigError(
                "credentials in the rpc url are not supported; give the user and password"
                " (or a cookie file) separately"
            )
        if password is not None and cookie_file is not None:
            raise ChainRpcConfigError("give either a password or a cookie file, not both")
        if (user is None) != (password is None):
            raise ChainRpcConfigError("user and password go together")
        if jsonrpc_version not in JSONRPC_VERSIONS:
            raise ChainRpcConfigError(
                "jsonrpc version must be one of %s" % ", ".join(JSONRPC_VERSIONS)
            )
        try:
            port = parts.port
        except ValueError:
            raise ChainRpcConfigError("rpc url has an invalid port: %s" % url) from None
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = port
        self._base_path = parts.path.rstrip("/")
        self.url = "%s://%s%s%s" % (
            parts.scheme,
            parts.hostname if ":" not in parts.hostname else "[%s]" % parts.hostname,
            ":%d" % port if port else "",
            self._base_path,
        )
        self._user = user
        self._password = password
        self._cookie_file = cookie_file
        self.wallet = wallet
        self.timeout = timeout
        self.jsonrpc_version = jsonrpc_version
        self._next_id = 0

    def _credentials(self) -> tuple[str, str] | None:
        if self._cookie_file is not None:
            return read_cookie(self._cookie_file)
        if self._user is not None and self._password is not None:
            return self._user, self._password
        return None

    def _path(self, wallet: str | None) -> str:
        if wallet is None:
            return self._base_path + "/"
        return "%s/wallet/%s" % (self._base_path, quote(wallet, safe=""))

    def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """Send one HTTP POST; the one place that touches the network."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        credentials = self._credentials()
        if credentials is not None:
            token = base64.b64encode(("%s:%s" % credentials).encode("utf-8")).decode("ascii")
            headers["Authorization"] = "Basic " + token
        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            reason = "timed out" if isinstance(exc, socket.timeout) else str(exc) or repr(exc)
            raise ChainRpcConnectionError(
                "cannot talk to the node at %s: %s" % (self.url, reason)
            ) from None
        finally:
            connection.close()

    def call(self, method: str, params: Any = None) -> Any:
        """Call a node-wide RPC method on the ``/`` endpoint and return its ``result``.

        ``params`` is a list (positional) or a dict (named arguments). Numbers with decimals
        come back as ``Decimal``. Raises a :class:`ChainRpcError` subclass on failure.
        """
        return self._call(self._path(None), method, params)

    def wallet_call(self, method: str, params: Any = None, wallet: str | None = None) -> Any:
        """Call a wallet RPC method on ``/wallet/<name>`` (``wallet`` or the client's wallet).

        With no wallet named anywhere the call goes to ``/``, which the node serves only while
        exactly one wallet is loaded (else RPC error -19).
        """
        return self._call(self._path(wallet if wallet is not None else self.wallet), method, params)

    def _call(self, path: str, method: str, params: Any) -> Any:
        self._next_id += 1
        request_id = "scnode-%d" % self._next_id
        request: dict[str, Any] = {
            "jsonrpc": self.jsonrpc_version,
            "id": request_id,
            "method": method,
            "params": [] if params is None else params,
        }
        body = json.dumps(request, default=_encode_decimal).encode("utf-8")
        status, answer = self._post(path, body)
        return self._result(method, status, answer, request_id)

    def _result(self, method: str, status: int, answer: bytes, request_id: str) -> Any:
        if status == 401:
            raise ChainRpcAuthError(
                "the node at %s refused the credentials (HTTP 401): check the RPC user and"
                " password or the cookie file" % self.url,
                http_status=status,
            )
        if status == 403:
            raise ChainRpcAuthError(
                "the node at %s forbids method %s for this RPC user (HTTP 403, rpcwhitelist)"
                % (self.url, method),
                http_status=status,
            )
        try:
            reply = json.loads(answer.decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, ValueError):
            reply = None
        if not isinstance(reply, dict):
            if status == 404:
                raise ChainRpcConnectionError(
                    "%s has no JSON-RPC endpoint at this path (HTTP 404): %s"
                    % (self.url, _quote_body(answer)),
                    http_status=status,
                )
            raise ChainRpcConnectionError(
                "unexpected answer from %s to %s (HTTP %d): %s"
                % (self.url, method, status, _quote_body(answer)),
                http_status=status,
            )
        error = reply.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            if isinstance(code, bool) or not isinstance(code, int):
                raise ChainRpcConnectionError(
                    "malformed error object from %s to %s (HTTP %d): %s"
                    % (self.url, method, status, _quote_body(answer)),
                    http_status=status,
                )
            raise ChainRpcResponseError(str(message or ""), code=code, http_status=status)
        if status != 200:
            raise ChainRpcConnectionError(
                "HTTP %d from %s to %s without an error object: %s"
                % (status, self.url, method, _quote_body(answer)),
                http_status=status,
            )
        if reply.get("id") != request_id:
            raise ChainRpcConnectionError(
                "answer from %s to %s carries id %r, expected %r"
                % (self.url, method, reply.get("id"), request_id),
                http_status=status,
            )
        if "result" not in reply:
            raise ChainRpcConnectionError(
                "answer from %s to %s has neither result nor error" % (self.url, method),
                http_status=status,
            )
        return reply["result"]


def _encode_decimal(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Bitcoin Core accepts amounts as JSON numbers or strings; a string keeps them exact.
        return format(value, "f")
    raise TypeError("cannot send %s in a JSON-RPC request" % type(value).__name__)


def client_from_module_params(params: dict[str, Any]) -> ChainRpcClient:
    """Build a client from the shared connection options (doc fragment ``chain_rpc``)."""
    return ChainRpcClient(
        url=params["rpc_url"],
        user=params.get("rpc_user"),
        password=params.get("rpc_password"),
        cookie_file=params.get("rpc_cookie_file"),
        wallet=params.get("wallet"),
        timeout=params.get("rpc_timeout") or DEFAULT_TIMEOUT,
        jsonrpc_version=params.get("rpc_jsonrpc_version") or "1.0",
    )


def chain_rpc_argument_spec() -> dict[str, Any]:
    """The connection options every chain module accepts, matching the ``chain_rpc`` fragment."""
    return {
        "rpc_url": {"type": "str", "default": DEFAULT_URL},
        "rpc_user": {"type": "str"},
        "rpc_password": {"type": "str", "no_log": True},
        "rpc_cookie_file": {"type": "path"},
        "rpc_timeout": {"type": "float", "default": DEFAULT_TIMEOUT},
        "rpc_jsonrpc_version": {"type": "str", "default": "1.0", "choices": list(JSONRPC_VERSIONS)},
        "wallet": {"type": "str"},
    }


CHAIN_RPC_MUTUALLY_EXCLUSIVE = [("rpc_password", "rpc_cookie_file")]
CHAIN_RPC_REQUIRED_TOGETHER = [("rpc_user", "rpc_password")]
