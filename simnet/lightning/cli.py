"""`lightning-cli` for the lightningd stand-in: `python -m simnet.lightning.cli`.

    python -m simnet.lightning.cli --lightning-dir=/var/lib/lightning --regtest getinfo
    python -m simnet.lightning.cli -k invoice amount_msat=1000 label=a description=b

Like lightning-cli: `--lightning-dir`, `--network`/`--regtest`/`--testnet`/`--signet`/`--mainnet`,
`--rpc-file`, `--conf` (lightning-dir, network and rpc-file read from it), `-k`/`--keywords`,
`-o`/`--order` (positional), auto-detected `key=value` parameters, values parsed as JSON when
they are JSON; output JSON indented by 3 (`-J`, the default), `-H` human-readable, `-R` raw.
Exit status 1 for an error from lightningd (the error object is printed), 2 when the socket
cannot be reached, 3 for usage errors.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

ERROR_FROM_LIGHTNINGD = 1
ERROR_TALKING_TO_LIGHTNINGD = 2
ERROR_USAGE = 3
NETWORK_FLAGS = {
    "--regtest": "regtest",
    "--testnet": "testnet",
    "--signet": "signet",
    "--mainnet": "bitcoin",
}


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _read_conf(path: Path, settings: dict[str, str]) -> None:
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        name = name.strip()
        if name in ("lightning-dir", "network", "rpc-file"):
            settings[name] = value.strip()
        elif name in ("regtest", "testnet", "signet", "mainnet"):
            settings["network"] = NETWORK_FLAGS["--" + name]


def parse(argv: list[str]) -> tuple[dict[str, str], str, list[str]]:
    """(settings, method, params) from the command line."""
    settings: dict[str, str] = {"format": "json", "style": "auto"}
    cmdline: dict[str, str] = {}
    rest: list[str] = []
    for i, arg in enumerate(argv):
        if rest or not arg.startswith("-"):
            rest = argv[i:]
            break
        if arg in NETWORK_FLAGS:
            cmdline["network"] = NETWORK_FLAGS[arg]
        elif arg in ("-k", "--keywords"):
            settings["style"] = "keywords"
        elif arg in ("-o", "--order"):
            settings["style"] = "order"
        elif arg in ("-H", "--human-readable"):
            settings["format"] = "human"
        elif arg in ("-J", "--json"):
            settings["format"] = "json"
        elif arg in ("-R", "--raw"):
            settings["format"] = "raw"
        elif arg.startswith("--") and "=" in arg:
            name, _, value = arg[2:].partition("=")
            cmdline[name] = value
        else:
            raise SystemExit(ERROR_USAGE)
    if not rest:
        rest = ["help"]
    conf = cmdline.get("conf")
    lightning_dir = cmdline.get("lightning-dir", str(Path.home() / ".lightning"))
    if conf:
        _read_conf(Path(conf), settings)
    elif (Path(lightning_dir) / "config").exists():
        _read_conf(Path(lightning_dir) / "config", settings)
    settings.update(cmdline)
    settings.setdefault("lightning-dir", lightning_dir)
    settings.setdefault("network", "bitcoin")
    return settings, rest[0], rest[1:]


def build_params(style: str, args: list[str]) -> dict[str, Any] | list[Any]:
    """Positional or keyword parameters (auto: keywords when every argument has `=`)."""
    if style == "auto":
        style = "keywords" if args and all("=" in a for a in args) else "order"
    if style == "keywords":
        params: dict[str, Any] = {}
        for arg in args:
            name, sep, value = arg.partition("=")
            if not sep:
                raise SystemExit(ERROR_USAGE)
            params[name] = _value(value)
        return params
    return [_value(a) for a in args]


def call(path: Path, method: str, params: dict[str, Any] | list[Any]) -> dict[str, Any]:
    """One request on the unix socket; the parsed response object."""
    request = {"jsonrpc": "2.0", "id": f"cli:{method}#1", "method": method, "params": params}
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        s.sendall(json.dumps(request).encode())
        buf = b""
        while not buf.endswith(b"\n\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    reply: dict[str, Any] = json.loads(buf)
    return reply


def _human(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            lines += (
                _human(item, f"{prefix}{key}")
                if isinstance(item, dict | list)
                else [f"{prefix}{key}={item if not isinstance(item, bool) else str(item).lower()}"]
            )
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            lines += _human(item, prefix)
        return lines
    return [str(value)]


def render(value: Any, fmt: str) -> str:
    """lightning-cli's output formats."""
    if fmt == "raw":
        return json.dumps(value, separators=(",", ":"))
    if fmt == "human":
        return "\n".join(_human(value))
    return json.dumps(value, indent=3)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    try:
        settings, method, args = parse(list(sys.argv[1:] if argv is None else argv))
        params = build_params(settings["style"], args)
    except SystemExit as exc:
        print("lightning-cli: usage: [options] <command> [<params>...]", file=sys.stderr)
        return int(exc.code or ERROR_USAGE)
    rpc_file = settings.get("rpc-file", "lightning-rpc")
    path = Path(rpc_file)
    if not path.is_absolute():
        path = Path(settings["lightning-dir"]) / settings["network"] / rpc_file
    try:
        reply = call(path, method, params)
    except OSError as exc:
        print(f"lightning-cli: Connecting to '{rpc_file}': {exc.strerror or exc}", file=sys.stderr)
        return ERROR_TALKING_TO_LIGHTNINGD
    if "error" in reply:
        print(
            render(reply["error"], settings["format"] if settings["format"] != "human" else "json")
        )
        return ERROR_FROM_LIGHTNINGD
    print(render(reply.get("result"), settings["format"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
