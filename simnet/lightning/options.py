"""lightningd's options, read the way lightningd reads them: config file(s), then the command line.

Options the stand-in simulates are parsed; real lightningd options it does not simulate are
accepted and logged; anything else is logged as unknown (never silently ignored).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ZMQ_TOPICS = (
    "channel_opened",
    "connect",
    "disconnect",
    "invoice_payment",
    "warning",
    "forward_event",
    "sendpay_success",
    "sendpay_failure",
)
ZMQ_OPTIONS = tuple("zmq-pub-" + t.replace("_", "-") for t in ZMQ_TOPICS)

SIMULATED = {
    "conf",
    "lightning-dir",
    "network",
    "mainnet",
    "testnet",
    "regtest",
    "signet",
    "alias",
    "rgb",
    "bind-addr",
    "addr",
    "announce-addr",
    "log-file",
    "log-level",
    "wallet",
    "bitcoin-rpcconnect",
    "bitcoin-rpcport",
    "bitcoin-rpcuser",
    "bitcoin-rpcpassword",
    "bitcoin-datadir",
    "plugin",
    "important-plugin",
    "xpay-handle-pay",
    "allow-deprecated-apis",
    "dev-bitcoind-poll",
    "rpc-file",
    "rpc-file-mode",
    "simnet-control",
    "simnet-role",
    "pid-file",
    "plugin-dir",
    "daemon",
}
# real lightningd options accepted without simulated effect (logged at start)
NOT_SIMULATED = {
    "disable-plugin",
    "clear-plugins",
    "bitcoin-cli",
    "bitcoin-retry-timeout",
    "fee-base",
    "fee-per-satoshi",
    "min-capacity-sat",
    "large-channels",
    "experimental-dual-fund",
    "experimental-splicing",
    "experimental-offers",
    "funding-confirms",
    "cltv-delta",
    "cltv-final",
    "max-concurrent-htlcs",
    "autoclean-cycle",
    "autoclean-succeededpays-age",
    "database-upgrade",
    "developer",
    "proxy",
    "always-use-proxy",
    "tor-service-password",
    "encrypted-hsm",
    "commit-time",
    "htlc-minimum-msat",
    "htlc-maximum-msat",
    "watchtime-blocks",
    "disable-dns",
    "grpc-port",
    "clnrest-port",
    "clnrest-host",
    "clnrest-protocol",
    "log-prefix",
    "log-timestamps",
    "invoices-onchain-fallback",
    "autolisten",
    "dev-no-plugin-checksum",
}
# options that take no value (everything else may be given as `--name value`)
FLAGS = {
    "mainnet",
    "testnet",
    "regtest",
    "signet",
    "daemon",
    "developer",
    "large-channels",
    "disable-dns",
    "always-use-proxy",
    "log-timestamps",
    "encrypted-hsm",
    "clear-plugins",
    "experimental-dual-fund",
    "experimental-splicing",
    "experimental-offers",
    "help",
    "version",
}
MULTI = {
    "plugin",
    "important-plugin",
    "bind-addr",
    "addr",
    "announce-addr",
    "log-file",
    "log-level",
}


@dataclass
class Options:
    """The parsed options; `values` keeps the last value, `multi` every value of repeatable ones."""

    values: dict[str, str] = field(default_factory=dict)
    multi: dict[str, list[str]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    not_simulated: list[str] = field(default_factory=list)

    def set(self, name: str, value: str, source: str) -> None:
        """Record one option occurrence."""
        if name in ("mainnet", "testnet", "regtest", "signet"):
            name, value = "network", ("bitcoin" if name == "mainnet" else name)
        self.values[name] = value
        self.sources[name] = source
        self.multi.setdefault(name, []).append(value)
        base = name[:-4] if name.endswith("-hwm") else name
        if name in SIMULATED or base in ZMQ_OPTIONS:
            return
        if name in NOT_SIMULATED:
            self.not_simulated.append(f"{name}={value}")
        else:
            self.unknown.append(f"{name}={value}")

    def get(self, name: str, default: str | None = None) -> str | None:
        """Last value given for an option."""
        return self.values.get(name, default)

    @property
    def network(self) -> str:
        """lightningd network name (default bitcoin, like lightningd)."""
        return self.values.get("network", "bitcoin")

    @property
    def lightning_dir(self) -> Path:
        """--lightning-dir (default ~/.lightning)."""
        return Path(self.values.get("lightning-dir", str(Path.home() / ".lightning"))).expanduser()

    @property
    def network_dir(self) -> Path:
        """<lightning-dir>/<network>."""
        return self.lightning_dir / self.network

    @property
    def plugins(self) -> list[str]:
        """Every plugin path given with plugin= or important-plugin=."""
        return self.multi.get("plugin", []) + self.multi.get("important-plugin", [])

    def flag(self, name: str, default: bool) -> bool:
        """A boolean option (`name`, `name=true`, `name=false`)."""
        value = self.values.get(name)
        if value is None:
            return default
        return value.lower() not in ("false", "0", "no")


def _split(arg: str) -> tuple[str, str]:
    name, _, value = arg.partition("=")
    return name.strip(), value.strip()


def _read_file(opts: Options, path: Path, source: str) -> None:
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        # lightningd's own form is `include <path>` (common/configdir.c); `include=` is taken too
        if line.startswith("include ") or line.startswith("include\t"):
            name, value = "include", line[len("include") :].strip()
        else:
            name, value = _split(line)
        if name == "include":
            _read_file(opts, (path.parent / value), f"{source} (include)")
            continue
        opts.set(name, value, str(path))


def parse(argv: list[str]) -> Options:
    """Parse argv (without the program name) plus the config files it points at."""
    cmdline: list[tuple[str, str]] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("--"):
            raise SystemExit(f"lightningd: unexpected argument {arg!r}")
        name, value = _split(arg[2:])
        # ccan/opt also takes `--name value` for options that have a value
        if "=" not in arg and name not in FLAGS and args and not args[0].startswith("-"):
            value = args.pop(0)
        cmdline.append((name, value))
    early = Options()
    for name, value in cmdline:
        if name in ("conf", "lightning-dir", "network", "mainnet", "testnet", "regtest", "signet"):
            early.set(name, value, "cmdline")
    opts = Options()
    conf = early.get("conf")
    files: list[Path] = []
    if conf:
        files.append(Path(conf))
    else:
        files += [early.lightning_dir / "config"]
    for path in files:
        if path.exists():
            _read_file(opts, path, str(path))
        elif conf:
            raise SystemExit(f"lightningd: Config file {path} not found")
    # the network may come from the main config; its per-network config is read next
    net_conf = (
        Path(opts.values.get("lightning-dir", str(early.lightning_dir)))
        / (early.values.get("network") or opts.network)
        / "config"
    )
    if not conf and net_conf.exists():
        _read_file(opts, net_conf, str(net_conf))
    for name, value in cmdline:
        opts.set(name, value, "cmdline")
    return opts
