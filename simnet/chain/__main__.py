"""`python -m simnet.chain [bitcoind options] [--coin=azcoin --emulate=v23 --control-port=N "
"...]`."""

from __future__ import annotations

import asyncio
import sys

from simnet.chain.config import ConfigError, load_options
from simnet.chain.node import Node
from simnet.chain.params import release_version


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        options, sim = load_options(args)
        if "version" in options.cli:
            coin = sim.get("coin") or "bitcoin"
            name = {"bitcoin": "Bitcoin Core", "azcoin": "AZCoin"}.get(coin, coin)
            ver = release_version(coin, sim.get("emulate"))[0]
            print(f"{name} daemon version v{ver} (simnet SIMULATION)")
            return 0
        if "help" in options.cli:
            print("simnet chain daemon (SIMULATION); options as bitcoind, see simnet/README.md")
            return 0
        node = Node(options, sim, args)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return 1
    for warning in options.warnings:
        print(warning, file=sys.stderr)
    return asyncio.run(node.run())


if __name__ == "__main__":
    sys.exit(main())
