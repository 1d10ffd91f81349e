"""Run the exchange: ``python -m scnode_exchange --env-file FILE``."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn
from pydantic import ValidationError

from scnode_exchange.api.app import create_app
from scnode_exchange.settings import ExchangeSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scnode-exchange", description=__doc__)
    parser.add_argument("--env-file", help="settings file (SCNODE_EXCHANGE_* lines)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8410)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = ExchangeSettings(_env_file=args.env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        # name each bad setting; pydantic never echoes SecretStr values
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            print(f"setting SCNODE_EXCHANGE_{field.upper()}: {error['msg']}", file=sys.stderr)
        return 2
    try:
        app = create_app(settings)
    except (OSError, ValueError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=75,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
