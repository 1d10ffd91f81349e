"""`bitcoin-cli` / `azcoin-cli` compatible client for the chain stand-in (and real daemons).

    python -m simnet.cli -regtest -datadir=/srv/node-btc -rpcwallet=w getbalances
    python -m simnet.cli --coin=azcoin -rpcport=19332 -named getnewaddress label=x

Reads the same options and config file as bitcoin-cli (`-conf`, `-datadir`, `-rpcconnect`,
`-rpcport`, `-rpcuser`/`-rpcpassword`, cookie, `-rpcwallet`, `-named`, `-regtest`, `-testnet`,
`-chain`, `-rpcwait`, `-rpcclienttimeout`, `-stdin`), sends JSON-RPC 2.0 like bitcoin-cli 30
(1.0 for `--coin=azcoin`, whose cli is v23) and prints results like bitcoin-cli: strings bare,
JSON indented by 2, errors as `error code: N` / `error message:` with exit status |N|.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

DEFAULT_PORTS = {
    ("bitcoin", "main"): 8332,
    ("bitcoin", "test"): 18332,
    ("bitcoin", "regtest"): 18443,
    ("azcoin", "main"): 19332,
    ("azcoin", "test"): 19332,
    ("azcoin", "regtest"): 18443,
}
NET_DIRS = {"main": "", "test": "testnet3", "regtest": "regtest"}


class CliError(Exception):
    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _conf(path: Path, network: str) -> dict[str, str]:
    """Options for `network` from a bitcoin.conf: its section overrides the top level, and
    network-only options (rpcport, rpcconnect…) count at the top level only on main."""
    top: dict[str, str] = {}
    sections: dict[str, dict[str, str]] = {}
    if not path.exists():
        return top
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if "=" not in line:
            continue
        key, value = (p.strip() for p in line.split("=", 1))
        if "." in key:
            name, key = key.split(".", 1)
            sections.setdefault(name, {})[key] = value
        elif section:
            sections.setdefault(section, {})[key] = value
        else:
            top[key] = value
    if network != "main":
        for key in ("rpcport", "rpcbind", "port", "wallet"):
            top.pop(key, None)
    return {**top, **sections.get(network, {})}


def _pretty(value: Any, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return "{\n" + pad + "}"
        items = [f"{pad}  {json.dumps(k)}: {_pretty(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        if not value:
            return "[\n" + pad + "]"
        items = [f"{pad}  {_pretty(v, indent + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(value, Decimal):
        return str(value)
    if value is None:
        return "null"
    return json.dumps(value)


def _param(method: str, index: int, name: str | None, text: str) -> Any:
    """Convert a command-line argument as bitcoin-cli's conversion table would."""
    from simnet.chain.methods import METHODS

    spec = METHODS.get(method)
    kind = "any"
    if spec is not None:
        arg = (
            next((a for a in spec.args if a.name == name), None)
            if name
            else (spec.args[index] if index < len(spec.args) else None)
        )
        kind = arg.type if arg else "any"
    if kind == "string":
        return text
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError:
        return text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    opts: dict[str, str] = {}
    rest: list[str] = []
    for i, arg in enumerate(args):
        if arg.startswith("-") and not rest:
            name, _, value = arg.lstrip("-").partition("=")
            opts[name] = value if "=" in arg else "1"
        else:
            rest = args[i:]
            break
    program = os.environ.get("SIMNET_PROGRAM", "")
    from_program = program.removesuffix("-cli") if program.endswith("-cli") else ""
    coin = opts.get("coin") or os.environ.get("SIMNET_COIN") or from_program or "bitcoin"
    if "version" in opts:
        from simnet.chain.params import release_version

        name = {"bitcoin": "Bitcoin Core", "azcoin": "AZCoin"}.get(coin, coin)
        print(f"{name} RPC client version v{release_version(coin)[0]} (simnet SIMULATION)")
        return 0
    network = opts.get("chain", "main")
    if opts.get("regtest") == "1":
        network = "regtest"
    elif opts.get("testnet") == "1":
        network = "test"
    datadir = Path(opts.get("datadir") or Path.home() / f".{coin}").expanduser()
    conf_path = Path(opts.get("conf", f"{coin}.conf")).expanduser()
    if not conf_path.is_absolute():
        conf_path = datadir / conf_path
    conf = _conf(conf_path, network)
    if network == "main" and conf.get("regtest") == "1":
        network = "regtest"
        conf = _conf(conf_path, network)
    if opts.get("stdin") == "1":
        rest += [line.rstrip("\n") for line in sys.stdin]
    if not rest:
        print("error: too few parameters (need at least command)", file=sys.stderr)
        return 1
    method, raw_params = rest[0], rest[1:]
    params: Any
    if opts.get("named") == "1":
        params = {}
        for item in raw_params:
            name, _, value = item.partition("=")
            params[name] = _param(method, 0, name, value)
    else:
        params = [_param(method, i, None, v) for i, v in enumerate(raw_params)]
    host = opts.get("rpcconnect") or conf.get("rpcconnect") or "127.0.0.1"
    port = int(
        opts.get("rpcport") or conf.get("rpcport") or DEFAULT_PORTS.get((coin, network), 18443)
    )
    user = opts.get("rpcuser") or conf.get("rpcuser")
    password = opts.get("rpcpassword") or conf.get("rpcpassword")
    if not password:
        cookie = Path(
            opts.get("rpccookiefile")
            or conf.get("rpccookiefile")
            or datadir / NET_DIRS[network] / ".cookie"
        )
        if not cookie.is_absolute():
            cookie = datadir / NET_DIRS[network] / cookie
        try:
            user, password = cookie.read_text().strip().split(":", 1)
        except OSError:
            print(
                "error: Could not locate RPC credentials. No authentication cookie could be "
                "found, and RPC password is not set.  See -rpcpassword and -stdinrpcpass.  "
                f"Configuration file: ({conf_path})",
                file=sys.stderr,
            )
            return 1
    wallet = opts.get("rpcwallet")
    path = "/" if wallet is None else "/wallet/" + quote(wallet, safe="")
    body: dict[str, Any] = {"method": method, "params": params, "id": 1}
    if coin == "bitcoin":
        body = {"jsonrpc": "2.0", **body}
    timeout = float(opts.get("rpcclienttimeout") or 900)
    deadline = time.time() + (timeout if opts.get("rpcwait") == "1" else 0)
    while True:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=timeout or None)
            auth = base64.b64encode(f"{user}:{password}".encode()).decode()
            conn.request(
                "POST",
                path,
                body=json.dumps(body, default=str),
                headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            data = resp.read()
            break
        except OSError:
            if time.time() < deadline:
                time.sleep(0.5)
                continue
            print(
                "error: timeout on transient error: Could not connect to the server "
                f"{host}:{port}\n\nMake sure the bitcoind server is running and that you are "
                "connecting to the correct RPC port.",
                file=sys.stderr,
            )
            return 1
    if resp.status == 401:
        print("error: Authorization failed: Incorrect rpcuser or rpcpassword", file=sys.stderr)
        return 1
    try:
        reply = json.loads(data, parse_float=Decimal)
    except ValueError:
        print(f"error: server returned HTTP error {resp.status}", file=sys.stderr)
        return 1
    error = reply.get("error")
    if error:
        if error.get("code") == -28 and opts.get("rpcwait") == "1" and time.time() < deadline:
            time.sleep(0.5)
            return main(argv)
        print(
            f"error code: {error.get('code')}\nerror message:\n{error.get('message')}",
            file=sys.stderr,
        )
        return abs(int(error.get("code", 1)))
    result = reply.get("result")
    if result is None:
        return 0
    print(result if isinstance(result, str) else _pretty(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
