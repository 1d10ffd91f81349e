"""What the member page routers (``trading``, ``mining``, ``tokens``) borrow from the app
factory: rendering, redirects, the member's exchange token and the fresh-TOTP check. The
factory puts one ``PageTools`` on ``app.state.pages``; a router reads it per request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.requests import HTTPConnection

from scnode_dashboard.exchange import ExchangeClient, ExchangeError


@dataclass(frozen=True)
class PageTools:
    """The app factory's helpers, for routers defined outside it."""

    render: Callable[..., HTMLResponse]
    redirect: Callable[[Any, str], RedirectResponse]
    exchange_token: Callable[[Any], Awaitable[str]]
    fresh_code: Callable[[Any, str, str], bool]
    exchange: ExchangeClient


def tools(conn: HTTPConnection | Request) -> PageTools:
    found: PageTools = conn.app.state.pages
    return found


def unavailable(exc: ExchangeError) -> str:
    """The member's message when the exchange cannot answer."""
    return f"The exchange cannot be reached right now ({exc.detail})."
