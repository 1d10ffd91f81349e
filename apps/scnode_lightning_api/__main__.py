"""Run the Lightning API: ``python -m scnode_lightning_api --env-file FILE``."""

from __future__ import annotations

import sys

from scnode_core import cli
from scnode_lightning_api.app import create_app
from scnode_lightning_api.settings import LightningApiSettings


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("scnode-lightning-api", __doc__, "SCNODE_LIGHTNING_API_")
    cli.add_listen_arguments(parser, 8411)
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    settings = cli.load_settings(LightningApiSettings, args.env_file)
    if settings is None:
        return 2
    cli.serve(create_app(settings), args.host, args.port, args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
