#!/usr/bin/python3
"""Prune guard: prune bitcoind only below lightningd's block height (PROTOCOLS.md).

With Lightning on the node, bitcoind runs with prune=1 (manual pruning). Pruning a block that
lightningd has not processed yet leaves it stuck for good (CLN issues #853, #5310, #5231), so
this guard, run by a systemd timer as the lightning user, asks lightningd for its height and
bitcoind for its chain, and calls `pruneblockchain` with

    min(lightningd height - margin, tip - keep, height that brings size_on_disk to the budget)

and only when the blocks on disk exceed the budget. When lightningd lags more than the alert
threshold behind bitcoind it logs an ALERT line and exits 1 (the unit fails, which the node's
monitoring sees); when lightningd cannot be asked at all it prunes nothing and exits 2.
Standard library only: it runs with Debian's python3.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


@dataclass
class Plan:
    """What one run decided."""

    bitcoind_blocks: int
    lightningd_height: int
    lag: int
    pruneheight: int
    size_on_disk: int
    budget_bytes: int
    safe_height: int
    prune_to: int | None
    alert: str | None


def plan(
    chain: dict[str, Any],
    lightningd_height: int,
    *,
    budget_mib: int,
    margin: int,
    keep: int,
    lag_alert: int,
) -> Plan:
    """Decide the prune height from getblockchaininfo and lightningd's height (pure)."""
    blocks = int(chain["blocks"])
    pruneheight = int(chain.get("pruneheight", 0))
    size = int(chain.get("size_on_disk", 0))
    budget = budget_mib * MIB
    lag = blocks - lightningd_height
    alert = None
    if lag > lag_alert:
        alert = (
            f"lightningd is {lag} blocks behind bitcoind ({lightningd_height} < {blocks}): "
            f"pruning is held at {max(lightningd_height - margin, 0)}; check lightningd"
        )
    safe = min(lightningd_height - margin, blocks - keep)
    prune_to = None
    if chain.get("pruned") and not chain.get("automatic_pruning") and size > budget:
        stored = max(blocks - pruneheight + 1, 1)
        per_block = size / stored
        wanted = pruneheight + math.ceil((size - budget) / per_block)
        target = min(wanted, safe)
        if target > pruneheight:
            prune_to = target
    return Plan(blocks, lightningd_height, lag, pruneheight, size, budget, safe, prune_to, alert)


def read_config(path: Path, values: dict[str, str] | None = None) -> dict[str, str]:
    """lightningd's config as name → last value, following `include` lines."""
    values = {} if values is None else values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("include ") or line.startswith("include="):
            include = Path(line[len("include") + 1 :].strip())
            read_config(include if include.is_absolute() else path.parent / include, values)
            continue
        name, _sep, value = line.partition("=")
        values[name.strip()] = value.strip()
    return values


def lightningd_call(rpc_file: str, method: str, timeout: float = 30) -> Any:
    """One call on lightningd's JSON-RPC unix socket (responses end with two newlines)."""
    request = {"jsonrpc": "2.0", "id": "prune-guard", "method": method, "params": {}}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(rpc_file)
        sock.sendall(json.dumps(request).encode())
        data = b""
        while not data.endswith(b"\n\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data)
    if "error" in reply:
        raise RuntimeError(f"lightningd {method}: {reply['error']}")
    return reply["result"]


def bitcoind_call(conf: dict[str, str], method: str, *params: Any, timeout: float = 120) -> Any:
    """One JSON-RPC call on bitcoind with the credentials of lightningd's config."""
    host = conf.get("bitcoin-rpcconnect", "127.0.0.1")
    url = f"http://{host}:{conf.get('bitcoin-rpcport', '8332')}/"
    auth = f"{conf.get('bitcoin-rpcuser', '')}:{conf.get('bitcoin-rpcpassword', '')}"
    body = json.dumps({"jsonrpc": "1.0", "id": "prune-guard", "method": method, "params": params})
    request = urllib.request.Request(
        url,
        data=body.encode(),
        headers={"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            reply = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        text = exc.read()
        if not text:
            raise RuntimeError(f"bitcoind {method}: HTTP {exc.code}") from exc
        reply = json.loads(text)
    if reply.get("error"):
        raise RuntimeError(f"bitcoind {method}: {reply['error']}")
    return reply["result"]


def main(argv: list[str] | None = None) -> int:
    """Run once; exit 0 (fine), 1 (lightningd lags: alert), 2 (lightningd or bitcoind unknown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", type=Path, default=Path("/etc/lightning/config"))
    parser.add_argument("--budget-mib", type=int, default=25000)
    parser.add_argument("--margin", type=int, default=144)
    parser.add_argument("--keep", type=int, default=288)
    parser.add_argument("--lag-alert", type=int, default=12)
    parser.add_argument("--status-file", type=Path)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    conf = read_config(args.conf)
    network = conf.get("network", "bitcoin")
    lightning_dir = conf.get("lightning-dir", str(Path.home() / ".lightning"))
    rpc_file = str(Path(lightning_dir) / network / conf.get("rpc-file", "lightning-rpc"))
    try:
        height = int(lightningd_call(rpc_file, "getinfo")["blockheight"])
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        print(f"ALERT: cannot ask lightningd ({exc}): nothing pruned", file=sys.stderr)
        return 2
    try:
        chain = bitcoind_call(conf, "getblockchaininfo")
        decided = plan(
            chain,
            height,
            budget_mib=args.budget_mib,
            margin=args.margin,
            keep=args.keep,
            lag_alert=args.lag_alert,
        )
        pruned_to = None
        if decided.prune_to is not None and not args.dry_run:
            pruned_to = int(bitcoind_call(conf, "pruneblockchain", decided.prune_to))
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        print(f"ALERT: cannot ask bitcoind ({exc}): nothing pruned", file=sys.stderr)
        return 2
    if chain.get("automatic_pruning"):
        print(
            "WARNING: bitcoind prunes automatically (prune >= 550): it may delete blocks "
            "lightningd still needs; run it with prune=1 behind this guard",
            file=sys.stderr,
        )
    status = {"time": int(time.time()), **asdict(decided), "pruned_to": pruned_to}
    print(json.dumps(status, sort_keys=True))
    if args.status_file is not None:
        tmp = args.status_file.with_name(args.status_file.name + ".tmp")
        tmp.write_text(json.dumps(status, sort_keys=True) + "\n")
        tmp.replace(args.status_file)
    if decided.alert:
        print(f"ALERT: {decided.alert}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
