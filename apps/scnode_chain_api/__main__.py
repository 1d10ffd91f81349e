"""Run one chain API instance: ``python -m scnode_chain_api --env-file FILE``."""

from __future__ import annotations

import sys

from scnode_chain_api.app import create_app
from scnode_chain_api.settings import ChainApiSettings
from scnode_core import cli


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("scnode-chain-api", __doc__, "SCNODE_CHAIN_API_")
    cli.add_listen_arguments(parser, 8401)
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    settings = cli.load_settings(ChainApiSettings, args.env_file)
    if settings is None:
        return 2
    cli.serve(create_app(settings), args.host, args.port, args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
