"""What every app's FastAPI app shares: the request-latency middleware."""

from __future__ import annotations

import time

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class LatencyMiddleware:
    """Request latency by method, route template and status into ``histogram`` (labels
    ``method, path, status``). Plain ASGI: no extra task per request, unlike ``@app.middleware``."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                code[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.histogram.labels(scope["method"], path, str(code[0])).observe(
                time.perf_counter() - started
            )
