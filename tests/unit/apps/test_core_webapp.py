"""scnode_core.webapp.LatencyMiddleware: every app's /metrics shows request latency by route
template (never the raw path, which would carry ids) and by the status the client saw."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Histogram

from scnode_core.webapp import LatencyMiddleware


def _app() -> tuple[FastAPI, CollectorRegistry]:
    registry = CollectorRegistry()
    histogram = Histogram(
        "test_request_seconds", "latency", ["method", "path", "status"], registry=registry
    )
    app = FastAPI()
    app.add_middleware(LatencyMiddleware, histogram=histogram)

    @app.get("/v1/items/{item}")
    async def item(item: str) -> dict[str, str]:
        if item == "gone":
            raise HTTPException(404, "no such item")
        if item == "boom":
            raise RuntimeError("bug")
        return {"item": item}

    return app, registry


def _count(registry: CollectorRegistry, method: str, path: str, status: str) -> float:
    value = registry.get_sample_value(
        "test_request_seconds_count", {"method": method, "path": path, "status": status}
    )
    return value or 0.0


def test_latency_is_labelled_by_route_template_and_status() -> None:
    app, registry = _app()
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/v1/items/a1").status_code == 200
        assert client.get("/v1/items/b2").status_code == 200
        assert client.get("/v1/items/gone").status_code == 404
        assert client.get("/nowhere").status_code == 404
        assert client.get("/v1/items/boom").status_code == 500
    assert _count(registry, "GET", "/v1/items/{item}", "200") == 2
    assert _count(registry, "GET", "/v1/items/{item}", "404") == 1
    assert _count(registry, "GET", "unmatched", "404") == 1
    assert _count(registry, "GET", "/v1/items/{item}", "500") == 1
    assert _count(registry, "GET", "/v1/items/a1", "200") == 0
