"""`python -m simnet.cluster pool ...`: the simulated SC Cluster pool (SIMULATION).

    python -m simnet.cluster pool --monitoring-url http://127.0.0.1:9093 --identity btc-SERIAL \
        --payout-address bcrt1q... --chain-control http://127.0.0.1:19443 \
        --reward-sats 312500000 [--other-work 0] [--mode transaction|coinbase] \
        [--period 600] [--poll 15] [--state pool-state.json] [--once]
    python -m simnet.cluster rebalance --listen 127.0.0.1:PORT --hub-control http://127.0.0.1:P \
        --chain-rpc http://127.0.0.1:P --chain-rpc-user U --chain-rpc-password-file F \
        --state swaps.json [--fee-base-sat 100 --fee-ppm 1000 --min-swap-sat --max-swap-sat]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from simnet.cluster.pool import ClusterPool, PoolConfig, monitoring_fetcher

BANNER = "*** SIMULATION: simnet SC Cluster pool (pays on the simulated chain only) ***"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simnet.cluster", description=BANNER)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pool", help="pay a node for its translator's acknowledged work")
    p.add_argument("--monitoring-url", required=True)
    p.add_argument("--identity", required=True, help="the node's user_identity (without .minerN)")
    p.add_argument("--payout-address", required=True)
    p.add_argument("--chain-control", required=True, help="chain stand-in control API URL")
    p.add_argument("--reward-sats", type=int, required=True, help="cluster reward per period")
    p.add_argument("--other-work", type=int, default=0, help="rest of the cluster's work/period")
    p.add_argument("--mode", choices=("transaction", "coinbase"), default="transaction")
    p.add_argument("--block-subsidy-sats", type=int, default=1_500_000_000)
    p.add_argument("--confirm-blocks", type=int, default=1)
    p.add_argument("--period", type=float, default=600.0, help="seconds per payout period")
    p.add_argument("--poll", type=float, default=15.0, help="seconds between channel reads")
    p.add_argument("--state", type=Path, help="ledger file (JSON)")
    p.add_argument("--once", action="store_true", help="close one period now and exit")
    r = sub.add_parser("rebalance", help="the cluster's swap endpoint (on-chain <-> Lightning)")
    r.add_argument("--listen", required=True, help="host:port")
    r.add_argument("--hub-control", required=True, help="the hub stand-in's control API URL")
    r.add_argument("--chain-rpc", required=True, help="bitcoind JSON-RPC URL")
    r.add_argument("--chain-rpc-user", required=True)
    r.add_argument("--chain-rpc-password-file", type=Path, required=True)
    r.add_argument("--state", type=Path, required=True, help="swaps file (JSON)")
    r.add_argument("--fee-base-sat", type=int, default=100)
    r.add_argument("--fee-ppm", type=int, default=1_000)
    r.add_argument("--min-swap-sat", type=int, default=10_000)
    r.add_argument("--max-swap-sat", type=int, default=10_000_000)
    r.add_argument("--token-file", type=Path, help="Bearer token the node must send")
    r.add_argument(
        "--network",
        choices=("bitcoin", "testnet", "testnet4", "signet", "regtest"),
        default="regtest",
    )
    r.add_argument("--chain-control", help="chain stand-in control API (else minichain)")
    args = parser.parse_args(argv)
    if args.command == "rebalance":
        return _rebalance(args)
    print(BANNER, file=sys.stderr, flush=True)
    config = PoolConfig(
        identity=args.identity,
        payout_address=args.payout_address,
        chain_control_url=args.chain_control,
        reward_sats=args.reward_sats,
        other_work=args.other_work,
        mode=args.mode,
        block_subsidy_sats=args.block_subsidy_sats,
        confirm_blocks=args.confirm_blocks,
    )
    pool = ClusterPool(config, monitoring_fetcher(args.monitoring_url), args.state)
    if args.once:
        print(json.dumps(pool.run_period()), flush=True)
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    next_period = time.monotonic() + args.period
    while not stop.wait(args.poll):
        try:
            pool.poll()
            if time.monotonic() >= next_period:
                next_period += args.period
                record = pool.run_period()
                if record is not None:
                    print(json.dumps(record), flush=True)
        except OSError as exc:
            print(f"simnet pool: {exc}", file=sys.stderr, flush=True)
    return 0


def _rebalance(args: argparse.Namespace) -> int:
    from aiohttp import web

    from simnet.cluster.rebalance import BANNER as REBALANCE_BANNER
    from simnet.cluster.rebalance import RebalanceConfig, RebalanceServer

    print(REBALANCE_BANNER, file=sys.stderr, flush=True)
    config = RebalanceConfig(
        hub_control_url=args.hub_control,
        chain_rpc_url=args.chain_rpc,
        chain_rpc_user=args.chain_rpc_user,
        chain_rpc_password=args.chain_rpc_password_file.read_text().strip(),
        fee_base_sat=args.fee_base_sat,
        fee_ppm=args.fee_ppm,
        min_swap_sat=args.min_swap_sat,
        max_swap_sat=args.max_swap_sat,
        token=args.token_file.read_text().strip() if args.token_file else None,
        network=args.network,
        chain_control_url=args.chain_control,
    )
    host, _, port = args.listen.rpartition(":")
    server = RebalanceServer(config, args.state)
    web.run_app(server.make_app(), host=host, port=int(port), access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
