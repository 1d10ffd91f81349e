"""The upstream releases the mirror imitates: asset names, URL paths and archive layouts.

Names and layouts as upstream publishes them (checked against install scripts and release
workflows):

- Bitcoin Core: `/bin/bitcoin-core-<v>/bitcoin-<v>-x86_64-linux-gnu.tar.gz`, top directory
  `bitcoin-<v>/` with `bin/bitcoind`, `bin/bitcoin-cli`; `SHA256SUMS` beside it (the real
  `SHA256SUMS.asc` signature file is not produced).
- AZCoin (satoshiware/azcoin GitHub releases): `/satoshiware/azcoin/releases/download/v<v>/`
  `azcoin_azcoin-<v>-x86_64-linux-gnu.tar.gz` (the name satoshiware's installer downloads; the
  pattern is a parameter), top directory `azcoin-<v>/` with `bin/azcoind`, `bin/azcoin-cli`,
  `share/rpcauth/rpcauth.py`; an unsigned `SHA256SUMS`.
- Core Lightning: `/ElementsProject/lightning/releases/download/v<v>/`
  `clightning-v<v>-Ubuntu-24.04-amd64.tar.xz` with `./usr/bin/lightningd`,
  `./usr/bin/lightning-cli` (installed with `tar -C /usr/local --strip-components=2`);
  checksums in `SHA256SUMS-v<v>`.
- SRI sv2-apps: `/stratum-mining/sv2-apps/releases/download/<tag>/`
  `miner-apps-x86_64-unknown-linux-musl.tar.gz` with `./translator/translator_sv2` and
  `./translator/translator-config.toml`. Upstream publishes no checksum file (GitHub shows asset
  digests); the mirror adds a `SHA256SUMS` so roles can verify the same way everywhere.
- lightningd/plugins (cl-zmq, for `reckless`-style installs): the git repository at
  `/lightningd/plugins(.git)` and GitHub's source archive of its commit,
  `/lightningd/plugins/archive/<commit>.tar.gz` (top directory `plugins-<commit>/`), with a
  mirror-made `SHA256SUMS` beside it (GitHub publishes none).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ARCH = "x86_64-linux-gnu"


@dataclass(frozen=True)
class Launcher:
    """One executable in an archive: runs `python3 -m <module>` of the bundled simnet."""

    path: str  # inside the archive, relative to the top directory
    module: str
    program: str  # exported as SIMNET_PROGRAM so one stand-in can play several binaries
    args: tuple[str, ...] = ()  # simnet's own options put before the user's arguments


@dataclass(frozen=True)
class Product:
    """A release family with its URL layout."""

    key: str
    versions: tuple[str, ...]
    directory: str  # URL directory, `{version}` substituted
    asset: str  # asset file name pattern
    top: str  # top directory inside the archive ("." for none)
    sums: str  # checksum file name pattern
    launchers: tuple[Launcher, ...]
    bundle_dir: str  # where the simnet copy goes, relative to the top directory
    extra_files: dict[str, str] = field(default_factory=dict)
    compression: str = "gz"

    def fmt(self, pattern: str, version: str) -> str:
        return pattern.format(version=version, arch=ARCH)


RPCAUTH_PY = '''#!/usr/bin/env python3
"""rpcauth.py (simnet): print an rpcauth= line and a fresh password for USERNAME."""
import hashlib
import hmac
import secrets
import sys


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: rpcauth.py USERNAME [PASSWORD]", file=sys.stderr)
        return 2
    user = sys.argv[1]
    password = sys.argv[2] if len(sys.argv) > 2 else secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    digest = hmac.new(salt.encode(), password.encode(), hashlib.sha256).hexdigest()
    print("String to be appended to bitcoin.conf:")
    print(f"rpcauth={user}:{salt}${digest}")
    print("Your password:")
    print(password)
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''

TRANSLATOR_EXAMPLE = """# simnet example translator config (sv2-apps shape)
downstream_address = "0.0.0.0"
downstream_port = 34255
downstream_extranonce2_size = 4
aggregate_channels = false

[downstream_difficulty_config]
min_individual_miner_hashrate = 100_000_000_000.0
shares_per_minute = 6.0
enable_vardiff = true
job_keepalive_interval_secs = 60

[[upstreams]]
address = "127.0.0.1"
port = 34254
authority_pubkey = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72"
user_identity = "sc-node"
"""


def default_products(
    bitcoin_versions: tuple[str, ...] = ("30.1", "30.2"),
    azcoin_versions: tuple[str, ...] = ("0.2.1", "0.2.2"),
    cln_versions: tuple[str, ...] = ("26.06.1", "26.06.2"),
    sv2_tags: tuple[str, ...] = ("v0.4.0", "v0.5.0"),
    azcoin_asset: str = "azcoin_azcoin-{version}-{arch}.tar.gz",
) -> list[Product]:
    """The four release families, two versions each by default (upgrade/rollback tests)."""
    return [
        Product(
            key="bitcoin",
            versions=bitcoin_versions,
            directory="bin/bitcoin-core-{version}",
            asset="bitcoin-{version}-{arch}.tar.gz",
            top="bitcoin-{version}",
            sums="SHA256SUMS",
            launchers=(
                Launcher("bin/bitcoind", "simnet.chain", "bitcoind"),
                Launcher("bin/bitcoin-cli", "simnet.cli", "bitcoin-cli"),
            ),
            bundle_dir="share/simnet",
        ),
        Product(
            key="azcoin",
            versions=azcoin_versions,
            directory="satoshiware/azcoin/releases/download/v{version}",
            asset=azcoin_asset,
            top="azcoin-{version}",
            sums="SHA256SUMS",
            launchers=(
                Launcher("bin/azcoind", "simnet.chain", "azcoind", ("--coin=azcoin",)),
                Launcher("bin/azcoin-cli", "simnet.cli", "azcoin-cli"),
            ),
            bundle_dir="share/simnet",
            extra_files={"share/rpcauth/rpcauth.py": RPCAUTH_PY},
        ),
        Product(
            key="cln",
            versions=cln_versions,
            directory="ElementsProject/lightning/releases/download/v{version}",
            asset="clightning-v{version}-Ubuntu-24.04-amd64.tar.xz",
            top=".",
            sums="SHA256SUMS-v{version}",
            launchers=(
                Launcher("usr/bin/lightningd", "simnet.lightning", "lightningd"),
                Launcher("usr/bin/lightning-cli", "simnet.lightning.cli", "lightning-cli"),
            ),
            bundle_dir="usr/share/simnet",
            compression="xz",
        ),
        Product(
            key="sv2-apps",
            versions=sv2_tags,
            directory="stratum-mining/sv2-apps/releases/download/{version}",
            asset="miner-apps-x86_64-unknown-linux-musl.tar.gz",
            top=".",
            sums="SHA256SUMS",
            launchers=(
                Launcher("translator/translator_sv2", "simnet.translator", "translator_sv2"),
            ),
            bundle_dir="share/simnet",
            extra_files={"translator/translator-config.toml": TRANSLATOR_EXAMPLE},
        ),
    ]
