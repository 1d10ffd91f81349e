"""`python -m simnet.translator -c <config.toml>`: the translator_sv2 stand-in."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

from simnet.translator.config import ConfigError, load_config
from simnet.translator.logfmt import TranslatorLog, level_from_rust_log

# `--version` and `--help` need only the standard library (the mirror's launchers run them on
# hosts without aiohttp); the server modules are imported when the proxy starts.
VERSION = "translator_sv2 {release} (simnet SIMULATION — not the real SRI translator)"
BANNER = (
    "*** SIMULATION: simnet translator_sv2 stand-in. Real Stratum V1 server, simulated SV2 "
    "upstream. Not for real mining. ***"
)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="translator_sv2", description=BANNER)
    parser.add_argument(
        "-c", "--config", default="proxy-config.toml", help="Path to the TOML configuration file"
    )
    parser.add_argument("-f", "--log-file", help="log file (overrides `log_file` in the config)")
    parser.add_argument("-V", "--version", action="store_true", help="print the version")
    return parser.parse_args(argv)


async def _run(config_path: str, log_file: str | None) -> int:
    try:
        config = load_config(config_path)
    except (OSError, ConfigError) as exc:
        print(f"Failed to load config: {exc}", file=sys.stderr)
        return 1
    if log_file:
        config.log_file = log_file
    log = TranslatorLog(level_from_rust_log(os.environ.get("RUST_LOG")), config.log_file)
    for key in config.unknown_keys:
        print(f"simnet: ignoring unknown configuration key `{key}`", file=sys.stderr)
    from aiohttp import web

    from simnet.translator.monitoring import create_app
    from simnet.translator.server import T_ROOT, Translator

    translator = Translator(config, log)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_interrupt() -> None:
        log.info(T_ROOT, "Ctrl+C received — initiating graceful shutdown...")
        stop.set()

    loop.add_signal_handler(signal.SIGHUP, log.reopen)
    # simnet only: SIGUSR2 simulates the pool dropping the SV2 connection
    loop.add_signal_handler(signal.SIGUSR2, translator.drop_upstream)
    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await translator.start()
    except OSError as exc:
        log.error(
            "translator_sv2::sv1::sv1_server::sv1_server",
            f"Failed to bind to {config.downstream_address}:{config.downstream_port}: {exc}",
        )
        return 1
    runner: Any = None
    if config.monitoring_address:
        host, _, port = config.monitoring_address.rpartition(":")
        runner = web.AppRunner(create_app(translator), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host.strip("[]"), int(port)).start()
    await stop.wait()
    if runner is not None:
        await runner.cleanup()
    await translator.stop()
    log.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.version:
        print(VERSION.format(release=os.environ.get("SIMNET_RELEASE_VERSION", "1.5.0")))
        return 0
    print(BANNER, file=sys.stderr, flush=True)
    return asyncio.run(_run(args.config, args.log_file))


if __name__ == "__main__":
    sys.exit(main())
