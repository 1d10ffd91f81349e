"""`python -m simnet.miners --url stratum+tcp://HOST:PORT --miner alice.rig1=1T ...`

Runs simulated SV1 miners in one process. With `--control HOST:PORT` it serves a small JSON
control API:

- `GET  /miners` → list of miners with their counters
- `POST /miners` `{"worker": "carol.rig3", "hashrate": "2T"}` → add and start one
- `POST /miners/{worker}/stop`, `POST /miners/{worker}/start`
- `POST /miners/{worker}/hashrate` `{"hashrate": "500G"}`
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from urllib.parse import urlparse

from aiohttp import web

from simnet.miners.miner import MinerFleet, parse_hashrate

BANNER = "*** SIMULATION: simnet SV1 miners (CPU hashing at tiny targets), not real mining ***"


def _endpoint(url: str) -> tuple[str, int]:
    parsed = urlparse(url if "://" in url else f"stratum+tcp://{url}")
    if parsed.hostname is None or parsed.port is None:
        raise SystemExit(f"bad --url {url!r}; want stratum+tcp://HOST:PORT")
    return parsed.hostname, parsed.port


def control_app(fleet: MinerFleet) -> web.Application:
    """The control API of one fleet."""

    async def list_miners(_: web.Request) -> web.Response:
        return web.json_response([m.snapshot() for m in fleet.miners.values()])

    async def add_miner(request: web.Request) -> web.Response:
        body = await request.json()
        miner = fleet.add(str(body["worker"]), parse_hashrate(str(body["hashrate"])))
        return web.json_response(miner.snapshot(), status=201)

    def _get(request: web.Request) -> str:
        worker = request.match_info["worker"]
        if worker not in fleet.miners:
            raise web.HTTPNotFound(text=f"no miner {worker}")
        return worker

    async def stop_miner(request: web.Request) -> web.Response:
        miner = fleet.miners[_get(request)]
        await miner.stop()
        return web.json_response(miner.snapshot())

    async def start_miner(request: web.Request) -> web.Response:
        miner = fleet.miners[_get(request)]
        miner.start()
        return web.json_response(miner.snapshot())

    async def set_hashrate(request: web.Request) -> web.Response:
        miner = fleet.miners[_get(request)]
        body = await request.json()
        miner.hashrate = parse_hashrate(str(body["hashrate"]))
        return web.json_response(miner.snapshot())

    app = web.Application()
    app.router.add_get("/miners", list_miners)
    app.router.add_post("/miners", add_miner)
    app.router.add_post("/miners/{worker}/stop", stop_miner)
    app.router.add_post("/miners/{worker}/start", start_miner)
    app.router.add_post("/miners/{worker}/hashrate", set_hashrate)
    return app


async def _run(args: argparse.Namespace) -> int:
    host, port = _endpoint(args.url)
    fleet = MinerFleet(host, port)
    for spec in args.miner:
        worker, _, rate = spec.partition("=")
        fleet.add(worker, parse_hashrate(rate or "1T"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner: web.AppRunner | None = None
    if args.control:
        c_host, _, c_port = args.control.rpartition(":")
        runner = web.AppRunner(control_app(fleet), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, c_host, int(c_port))
        await site.start()
        bound = runner.addresses[0]
        print(f"control API on http://{bound[0]}:{bound[1]}", flush=True)
    if args.duration:
        loop.call_later(args.duration, stop.set)
    await stop.wait()
    await fleet.stop_all()
    if runner is not None:
        await runner.cleanup()
    for miner in fleet.miners.values():
        print(f"{miner.worker}: {miner.snapshot()}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simnet.miners", description=BANNER)
    parser.add_argument("--url", required=True, help="stratum+tcp://HOST:PORT of the translator")
    parser.add_argument(
        "--miner", action="append", default=[], help="WORKER=HASHRATE, e.g. alice.rig1=1T"
    )
    parser.add_argument("--control", help="HOST:PORT for the control API (port 0 = any)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    args = parser.parse_args(argv)
    print(BANNER, file=sys.stderr, flush=True)
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
