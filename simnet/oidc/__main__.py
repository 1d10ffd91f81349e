"""``python -m simnet.oidc --port P --config FILE``: the BTCofAZ OIDC provider SIMULATION.

The config file is JSON::

    {"clients": [{"client_id": "...", "secret": "...", "redirect_uris": ["..."]}],
     "users": [{"login": "alice", "password": "...", "given_name": "Alice"}]}

The issuer is ``http://<host>:<port>/`` unless ``--issuer`` names the URL the provider is
reached at (behind a proxy). The RSA signing key is generated at start and never stored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BANNER = (
    "*** SIMULATION: simnet OpenID Connect provider (WordPress OIDC server plugin shape). "
    "Test logins only. ***"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simnet.oidc", description=BANNER)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8480)
    parser.add_argument("--issuer", help="public issuer URL (default http://host:port/)")
    parser.add_argument("--config", required=True, help="JSON file with clients and users")
    args = parser.parse_args(argv)
    from aiohttp import web

    from simnet.oidc.provider import Client, Provider, User, build_app

    config = json.loads(Path(args.config).read_text())
    issuer = args.issuer or f"http://{args.host}:{args.port}/"
    if not issuer.endswith("/"):
        issuer += "/"
    provider = Provider(
        issuer,
        {
            c["client_id"]: Client(
                c["client_id"], c["secret"], tuple(c["redirect_uris"]), c.get("name", "SC Node")
            )
            for c in config.get("clients", [])
        },
        {
            u["login"]: User(
                u["login"], u["password"], u.get("given_name", ""), u.get("family_name", "")
            )
            for u in config.get("users", [])
        },
    )
    print(BANNER, flush=True)
    print(f"simnet oidc: issuer {issuer} (key {provider.key.kid}, SIMULATION)", flush=True)
    web.run_app(build_app(provider), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
