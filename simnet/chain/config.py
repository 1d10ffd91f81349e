"""bitcoind-style options: `-name=value` on the command line, `name=value` in the config file,
`[main]`/`[test]`/`[regtest]` sections, `-noname`, several values for list options.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# Options the stand-in acts on.
SIMULATED = {
    "conf",
    "datadir",
    "regtest",
    "testnet",
    "chain",
    "rpcport",
    "rpcbind",
    "rpcallowip",
    "rpcauth",
    "rpcuser",
    "rpcpassword",
    "rpccookiefile",
    "server",
    "txindex",
    "prune",
    "wallet",
    "walletdir",
    "disablewallet",
    "listen",
    "port",
    "bind",
    "seednode",
    "addnode",
    "connect",
    "printtoconsole",
    "daemon",
    "fallbackfee",
    "maxmempool",
    "rpcwhitelist",
    "rpcwhitelistdefault",
    "pid",
    "debuglogfile",
    "includeconf",
}
# Options accepted (they change nothing a client of the simulation can observe); logged.
ACCEPTED = {
    "assumevalid",
    "dbcache",
    "maxuploadtarget",
    "discover",
    "externalip",
    "debug",
    "logtimestamps",
    "shrinkdebugfile",
    "rpcthreads",
    "rpcworkqueue",
    "rpcservertimeout",
    "maxconnections",
    "whitelist",
    "par",
    "blockfilterindex",
    "peerblockfilters",
    "coinstatsindex",
    "mempoolfullrbf",
    "walletrbf",
    "onlynet",
    "proxy",
    "listenonion",
    "torcontrol",
    "torpassword",
    "i2psam",
    "natpmp",
    "upnp",
    "alertnotify",
    "blocknotify",
    "walletnotify",
    "startupnotify",
    "persistmempool",
    "minrelaytxfee",
    "deprecatedrpc",
    "rest",
    "settings",
    "uacomment",
    "timeout",
    "blocksdir",
    "dnsseed",
    "fixedseeds",
    "logips",
    "logthreadnames",
    "logsourcelocations",
    "maxorphantx",
    "mempoolexpiry",
    "paytxfee",
    "txconfirmtarget",
    "avoidpartialspends",
    "spendzeroconfchange",
    "keypool",
    "blocksonly",
    "peerbloomfilters",
    "v2transport",
    "datacarrier",
    "datacarriersize",
    "permitbaremultisig",
    "maxtxfee",
    "reindex",
    "reindex-chainstate",
    "loadblock",
    "shutdownnotify",
    "rpcdoccheck",
    "zmqpubhashblockhwm",
    "zmqpubhashtxhwm",
    "zmqpubrawblockhwm",
    "zmqpubrawtxhwm",
    "zmqpubsequencehwm",
    "bytespersigop",
    "limitancestorcount",
    "limitdescendantcount",
    "nodebuglogfile",
}
ZMQ_TOPICS = ("hashblock", "hashtx", "rawblock", "rawtx", "sequence")
NETWORK_ONLY = {"addnode", "connect", "port", "bind", "rpcport", "rpcbind", "wallet"}


class ConfigError(Exception):
    """A configuration bitcoind refuses to start with; the message is printed as Core does."""


def known(name: str) -> bool:
    return (
        name in SIMULATED
        or name in ACCEPTED
        or (name.startswith("zmqpub") and name[6:].removesuffix("hwm") in ZMQ_TOPICS)
    )


@dataclass
class Options:
    cli: dict[str, list[str]] = field(default_factory=dict)
    file: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    network: str = "main"
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def get_all(self, name: str) -> list[str]:
        if name in self.cli:
            return self.cli[name]
        section = self.file.get(self.network, {})
        if name in section:
            return section[name]
        top = self.file.get("", {})
        if name in top and not (name in NETWORK_ONLY and self.network != "main"):
            return top[name]
        return []

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.get_all(name)
        return values[-1] if values else default

    def get_bool(self, name: str, default: bool) -> bool:
        value = self.get(name)
        if value is None:
            return default
        return value.strip().lower() not in ("0", "false", "no", "")

    def get_int(self, name: str, default: int) -> int:
        value = self.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            digits = ""
            for ch in value.strip():
                if ch.isdigit() or (ch == "-" and not digits):
                    digits += ch
                else:
                    break
            return int(digits) if digits not in ("", "-") else 0


def _set(store: dict[str, list[str]], raw: str, value: str) -> None:
    name = raw
    if name.startswith("no") and not known(name) and known(name[2:]):
        name, value = name[2:], "0" if value in ("", "1") else "1"
    store.setdefault(name, []).append(value)


def parse_cli(argv: list[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Split bitcoind options from simnet's own `--sim-...` style options."""
    core: dict[str, list[str]] = {}
    sim: dict[str, str] = {}
    sim_names = {
        "coin",
        "emulate",
        "control-port",
        "control-bind",
        "block-interval",
        "hrp",
        "coin-rpc-port",
        "coin-p2p-port",
        "subsidy-sats",
        "halving-interval",
    }
    for arg in argv:
        if not arg.startswith("-"):
            raise ConfigError(
                f"Error: Command line contains unexpected token '{arg}', see bitcoind -h for "
                "a list of options."
            )
        body = arg.lstrip("-")
        name, _, value = body.partition("=")
        if name in sim_names:
            sim[name] = value
            continue
        if (
            not known(name)
            and not (name.startswith("no") and known(name[2:]))
            and name not in ("version", "help", "h", "?")
        ):
            raise ConfigError(f"Error: Invalid parameter {arg.split('=')[0]}")
        _set(core, name, value if "=" in body else "1")
    return core, sim


def parse_file(text: str, path: Path, options: Options) -> None:
    section = ""
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if "=" not in line:
            raise ConfigError(
                f"Error: Error reading configuration file: parse error on line {lineno}: {line}"
            )
        name, value = (part.strip() for part in line.split("=", 1))
        if name.startswith("-"):
            raise ConfigError(
                f"Error: Error reading configuration file: parse error on line {lineno}: "
                f"{line}, options in configuration file must be specified without leading -"
            )
        if "." in name:
            section_name, name = name.split(".", 1)
            target = options.file.setdefault(section_name, {})
        else:
            target = options.file.setdefault(section, {})
        if not known(name) and not (name.startswith("no") and known(name[2:])):
            options.warnings.append(f"Warning: Ignoring unknown configuration value {name}")
            continue
        _set(target, name, value)


def load_options(argv: list[str]) -> tuple[Options, dict[str, str]]:
    cli, sim = parse_cli(argv)
    # Launchers named bitcoind/azcoind (simnet.mirror) may set the coin in the environment.
    for name, env in (("coin", "SIMNET_COIN"), ("emulate", "SIMNET_EMULATE")):
        if name not in sim and os.environ.get(env):
            sim[name] = os.environ[env]
    program = os.environ.get("SIMNET_PROGRAM", "")
    if "coin" not in sim and program.endswith("d") and program not in ("bitcoind", ""):
        sim["coin"] = program[:-1]  # azcoind -> azcoin (simnet.mirror's launchers)
    options = Options(cli=cli)
    if "version" in cli or "help" in cli:
        return options, sim
    coin = sim.get("coin") or "bitcoin"
    datadir = Path(options.cli.get("datadir", [""])[-1] or Path.home() / f".{coin}").expanduser()
    conf_name = cli.get("conf", [f"{coin}.conf"])[-1]
    conf_path = Path(conf_name).expanduser()
    if not conf_path.is_absolute():
        conf_path = datadir / conf_path
    if conf_path.exists():
        parse_file(conf_path.read_text(), conf_path, options)
        for inc in options.file.get("", {}).get("includeconf", []):
            inc_path = Path(inc) if Path(inc).is_absolute() else datadir / inc
            if inc_path.exists():
                parse_file(inc_path.read_text(), inc_path, options)
    elif "conf" in cli:
        raise ConfigError(
            f'Error: Error reading configuration file: specified config file "{conf_path}" '
            "could not be opened."
        )
    # datadir may also come from the file
    top = options.file.get("", {})
    chain = cli.get("chain", top.get("chain", ["main"]))[-1]
    if _flag(cli, top, "regtest"):
        chain = "regtest"
    elif _flag(cli, top, "testnet"):
        chain = "test"
    if chain not in ("main", "test", "regtest"):
        raise ConfigError(f"Error: Invalid chain type {chain}")
    options.network = chain
    coin_v23 = (sim.get("emulate") or ("v30" if coin == "bitcoin" else "v23")) == "v23"
    unsuitable = [
        f"Config setting for -{name} only applied on {chain} network when in [{chain}] section."
        for name in top
        if (name in NETWORK_ONLY or (coin_v23 and name == "walletdir"))
        and chain != "main"
        and name not in options.file.get(chain, {})
        and name not in cli
    ]
    if unsuitable and coin_v23:
        # v23 (AZCoin 0.2.x, seen on the real azcoind) refuses to start
        raise ConfigError("Error: " + "\n".join(unsuitable))
    options.warnings += [f"Warning: {line}" for line in unsuitable]
    return options, sim


def _flag(cli: dict[str, list[str]], top: dict[str, list[str]], name: str) -> bool:
    values = cli.get(name) or top.get(name) or []
    return bool(values) and values[-1] not in ("0", "")


def validate_rpcauth(entries: list[str]) -> list[tuple[str, str, str]]:
    out = []
    for entry in entries:
        user, sep, rest = entry.partition(":")
        salt, sep2, digest = rest.partition("$")
        if not sep or not sep2 or not user or not salt or not digest:
            raise ConfigError("Error: Invalid -rpcauth argument.")
        out.append((user, salt, digest))
    return out
