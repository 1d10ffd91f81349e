"""Run the exchange: ``python -m scnode_exchange --env-file FILE``."""

from __future__ import annotations

import sys

from scnode_core import cli
from scnode_exchange.api.app import create_app
from scnode_exchange.settings import ExchangeSettings


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("scnode-exchange", __doc__, "SCNODE_EXCHANGE_")
    cli.add_listen_arguments(parser, 8410)
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    settings = cli.load_settings(ExchangeSettings, args.env_file)
    if settings is None:
        return 2
    try:
        app = create_app(settings)
    except (OSError, ValueError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    cli.serve(app, args.host, args.port, args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
