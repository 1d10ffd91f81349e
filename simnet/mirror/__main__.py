"""`python -m simnet.mirror build|serve`: the release mirror (SIMULATION archives).

python -m simnet.mirror build --out DIR [--bitcoin 30.1,30.2] [--azcoin 0.2.1,0.2.2]
    [--cln 26.06.1,26.06.2] [--sv2 v0.4.0,v0.5.0]
    [--azcoin-asset 'azcoin_azcoin-{version}-{arch}.tar.gz']
python -m simnet.mirror serve --root DIR [--host 127.0.0.1] [--port 8080]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simnet.mirror.build import build
from simnet.mirror.releases import default_products
from simnet.mirror.serve import make_server

BANNER = "*** SIMULATION: simnet release mirror; archives hold stand-in launchers ***"


def _versions(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simnet.mirror", description=BANNER)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the mirror tree")
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--bitcoin", default="30.1,30.2")
    b.add_argument("--azcoin", default="0.2.1,0.2.2")
    b.add_argument("--cln", default="26.06.1,26.06.2")
    b.add_argument("--sv2", default="v0.4.0,v0.5.0")
    b.add_argument("--azcoin-asset", default="azcoin_azcoin-{version}-{arch}.tar.gz")
    s = sub.add_parser("serve", help="serve a built tree over HTTP")
    s.add_argument("--root", required=True, type=Path)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    print(BANNER, file=sys.stderr, flush=True)
    if args.command == "build":
        products = default_products(
            bitcoin_versions=_versions(args.bitcoin),
            azcoin_versions=_versions(args.azcoin),
            cln_versions=_versions(args.cln),
            sv2_tags=_versions(args.sv2),
            azcoin_asset=args.azcoin_asset,
        )
        for asset in build(args.out, products):
            print(f"{asset.sha256}  {asset.url_path}")
        return 0
    server = make_server(args.root, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"serving {args.root} on http://{host!s}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
