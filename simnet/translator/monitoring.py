"""Monitoring HTTP API of the sv2-apps translator (`monitoring_address`), same paths and JSON
shapes as `stratum-apps/src/monitoring` (health, server channels, SV1 clients, Prometheus)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from simnet.translator.server import Translator

DEFAULT_LIMIT = 25
MAX_LIMIT = 100


def _page(request: web.Request) -> tuple[int, int]:
    try:
        offset = max(0, int(request.query.get("offset", "0")))
        limit = min(MAX_LIMIT, int(request.query.get("limit", str(DEFAULT_LIMIT))))
    except ValueError as exc:
        raise web.HTTPBadRequest(text='{"error": "invalid pagination"}') from exc
    return offset, limit


def create_app(translator: Translator) -> web.Application:
    """The monitoring application bound to one translator."""
    started = time.monotonic()

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "timestamp": int(time.time())})

    async def server(_: web.Request) -> web.Response:
        channels = translator.server_channels()
        return web.json_response(
            {
                "extended_channels_count": len(channels),
                "standard_channels_count": 0,
                "total_hashrate": sum(c["nominal_hashrate"] for c in channels),
            }
        )

    async def server_channels(request: web.Request) -> web.Response:
        offset, limit = _page(request)
        channels = translator.server_channels()
        return web.json_response(
            {
                "offset": min(offset, len(channels)),
                "limit": limit,
                "total_extended": len(channels),
                "total_standard": 0,
                "extended_channels": channels[offset : offset + limit],
                "standard_channels": [],
            }
        )

    async def sv1_clients(request: web.Request) -> web.Response:
        offset, limit = _page(request)
        clients = translator.sv1_clients()
        return web.json_response(
            {
                "offset": min(offset, len(clients)),
                "limit": limit,
                "total": len(clients),
                "items": clients[offset : offset + limit],
            }
        )

    async def sv1_client(request: web.Request) -> web.Response:
        wanted = request.match_info["client_id"]
        for client in translator.sv1_clients():
            if str(client["client_id"]) == wanted:
                return web.json_response(client)
        return web.json_response({"error": f"Sv1 client {wanted} not found"}, status=404)

    async def global_info(_: web.Request) -> web.Response:
        channels = translator.server_channels()
        clients = translator.sv1_clients()
        body: dict[str, Any] = {
            "server": {
                "extended_channels": len(channels),
                "standard_channels": 0,
                "total_hashrate": sum(c["nominal_hashrate"] for c in channels),
            },
            "sv1_clients": {
                "total_clients": len(clients),
                "total_hashrate": sum(c["hashrate"] or 0 for c in clients),
            },
            "uptime_secs": int(time.monotonic() - started),
        }
        return web.json_response(body)

    async def metrics(_: web.Request) -> web.Response:
        channels = translator.server_channels()
        clients = translator.sv1_clients()
        lines = [
            "# HELP sv2_uptime_seconds Server uptime in seconds",
            "# TYPE sv2_uptime_seconds gauge",
            f"sv2_uptime_seconds {int(time.monotonic() - started)}",
            "# HELP sv2_server_channels Number of server channels by type",
            "# TYPE sv2_server_channels gauge",
            f'sv2_server_channels{{channel_type="extended"}} {len(channels)}',
            'sv2_server_channels{channel_type="standard"} 0',
            "# HELP sv2_server_hashrate_total Total hashrate of server channels",
            "# TYPE sv2_server_hashrate_total gauge",
            f"sv2_server_hashrate_total {sum(c['nominal_hashrate'] for c in channels)}",
            "# HELP sv2_server_shares_accepted_total Accepted shares per server channel",
            "# TYPE sv2_server_shares_accepted_total gauge",
        ]
        for c in channels:
            labels = f'channel_id="{c["channel_id"]}",user_identity="{c["user_identity"]}"'
            lines.append(f"sv2_server_shares_accepted_total{{{labels}}} {c['shares_acknowledged']}")
        lines += [
            "# HELP sv2_server_channel_hashrate Hashrate per server channel",
            "# TYPE sv2_server_channel_hashrate gauge",
        ]
        for c in channels:
            labels = f'channel_id="{c["channel_id"]}",user_identity="{c["user_identity"]}"'
            lines.append(f"sv2_server_channel_hashrate{{{labels}}} {c['nominal_hashrate']}")
        lines += [
            "# HELP sv2_server_blocks_found_total Blocks found across server channels",
            "# TYPE sv2_server_blocks_found_total gauge",
            "sv2_server_blocks_found_total 0",
            "# HELP sv1_clients_total Number of SV1 clients",
            "# TYPE sv1_clients_total gauge",
            f"sv1_clients_total {len(clients)}",
            "# HELP sv1_hashrate_total Total SV1 hashrate",
            "# TYPE sv1_hashrate_total gauge",
            f"sv1_hashrate_total {sum(c['hashrate'] or 0 for c in clients)}",
        ]
        return web.Response(
            text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8"
        )

    app = web.Application()
    app.router.add_get("/api/v1/health", health)
    app.router.add_get("/api/v1/global", global_info)
    app.router.add_get("/api/v1/server", server)
    app.router.add_get("/api/v1/server/channels", server_channels)
    app.router.add_get("/api/v1/sv1/clients", sv1_clients)
    app.router.add_get("/api/v1/sv1/clients/{client_id}", sv1_client)
    app.router.add_get("/metrics", metrics)
    return app
