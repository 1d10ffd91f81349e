"""The routes of a FastAPI app as ``METHOD /path`` strings (``WS /path`` for WebSockets,
``MOUNT /path`` for mounted apps), walked from the app itself — included routers too — so the
access matrix knows every route the app serves and fails on one nobody classified."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIWebSocketRoute
from starlette.routing import Mount, WebSocketRoute


def _contexts(route: Any) -> Iterator[Any]:
    if hasattr(route, "effective_route_contexts"):  # an included router (FastAPI ≥ 0.160)
        yield from route.effective_route_contexts()
    else:
        yield route


def walk(app: FastAPI) -> list[str]:
    found: set[str] = set()
    for route in app.routes:
        for context in _contexts(route):
            original = getattr(context, "original_route", context)
            path = getattr(context, "path", None) or getattr(original, "path", "")
            if isinstance(original, APIWebSocketRoute | WebSocketRoute):
                found.add(f"WS {path}")
            elif isinstance(original, Mount):
                found.add(f"MOUNT {path}")
            else:
                for method in sorted(set(getattr(context, "methods", None) or ()) - {"HEAD"}):
                    found.add(f"{method} {path}")
    return sorted(found)
