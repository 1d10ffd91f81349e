"""Per-chain constants: which chain, which network, which emulated version."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import bitcoin
from bitcoin.core import CBlock, CMutableTransaction, CMutableTxIn, CMutableTxOut, COutPoint
from bitcoin.core.script import OP_CHECKSIG, CScript

COIN = 100_000_000
REGTEST_BITS = 0x207FFFFF


@dataclass(frozen=True)
class ChainParams:
    """Everything that differs between Bitcoin, AZCoin and a microcurrency on one network."""

    coin: str  # bitcoin | azcoin | <microcurrency name>
    network: str  # main | test | regtest
    hrp: str
    rpc_port: int
    p2p_port: int
    subsidy: int  # sats
    halving_interval: int
    p2pkh_version: int | None
    p2sh_version: int | None
    genesis: CBlock
    emulate: str  # v30 | v23
    currency_name: str

    @property
    def chain_name(self) -> str:
        """The value Core reports as `chain` (main, test, regtest)."""
        return self.network

    @property
    def net_dir(self) -> str:
        """Sub-directory of the datadir for this network ("" for main)."""
        return {"main": "", "test": "testnet3", "regtest": "regtest"}[self.network]

    @property
    def mainnet_keys(self) -> bool:
        return self.network == "main"

    @property
    def coin_type(self) -> int:
        return 0 if self.network == "main" else 1

    @property
    def v30(self) -> bool:
        return self.emulate == "v30"

    def block_subsidy(self, height: int) -> int:
        halvings = height // self.halving_interval
        return 0 if halvings >= 64 else self.subsidy >> halvings


def release_version(coin: str, emulate: str | None = None) -> tuple[str, int]:
    """("30.2.0", 300200): the release the stand-in plays, from SIMNET_RELEASE_VERSION (set by
    simnet.mirror's launchers) or the emulated generation's default (30.0.0 / 0.2.0)."""
    import os

    default = "30.0.0" if (emulate or ("v30" if coin == "bitcoin" else "v23")) == "v30" else "0.2.0"
    text = os.environ.get("SIMNET_RELEASE_VERSION") or default
    parts = [int(p) if p.isdigit() else 0 for p in text.lstrip("v").split(".")[:3]]
    parts += [0] * (3 - len(parts))
    return ".".join(map(str, parts)), parts[0] * 10000 + parts[1] * 100 + parts[2]


def _synthetic_genesis(coin: str, network: str) -> CBlock:
    """A deterministic genesis block for chains whose real genesis we do not carry.

    Same layout as Bitcoin's (one coinbase paying to an unspendable key), with the regtest
    target, so the chain starts from a real, serialized block.
    """
    message = f"SIMULATION {coin} {network} genesis".encode()
    tx = CMutableTransaction(
        [CMutableTxIn(COutPoint(), CScript([0x1D00FFFF, b"\x04", message]), 0xFFFFFFFF)],
        [
            CMutableTxOut(
                50 * COIN, CScript([hashlib.sha256(message).digest() + b"\x02", OP_CHECKSIG])
            )
        ],
    )
    block = CBlock(
        nVersion=1,
        hashPrevBlock=b"\0" * 32,
        hashMerkleRoot=tx.GetTxid(),
        nTime=1_735_689_600,
        nBits=REGTEST_BITS,
        nNonce=0,
        vtx=[tx],
    )
    from simnet.chain.blocks import solve_header  # local import: blocks imports params

    return solve_header(block)


def _regtest_genesis() -> CBlock:
    bitcoin.SelectParams("regtest")
    return bitcoin.params.GENESIS_BLOCK


def chain_params(
    coin: str,
    network: str,
    emulate: str | None = None,
    hrp: str | None = None,
    rpc_port: int | None = None,
    p2p_port: int | None = None,
    subsidy: int | None = None,
    halving_interval: int | None = None,
) -> ChainParams:
    """Build the parameters of `coin` on `network` (options override a microcurrency's)."""
    if network == "regtest":
        # AZCoin's and a microcurrency's regtest is Bitcoin's regtest (PROTOCOLS.md), with the
        # coin's own reward.
        base_subsidy = {"bitcoin": 50 * COIN, "azcoin": 15 * COIN}.get(coin, 15 * COIN)
        return ChainParams(
            coin=coin,
            network=network,
            hrp=hrp or "bcrt",
            rpc_port=rpc_port or 18443,
            p2p_port=p2p_port or 18444,
            subsidy=subsidy if subsidy is not None else base_subsidy,
            halving_interval=halving_interval or 150,
            p2pkh_version=111,
            p2sh_version=196,
            genesis=_regtest_genesis(),
            emulate=emulate or ("v30" if coin == "bitcoin" else "v23"),
            currency_name="Bitcoin",
        )
    if coin == "bitcoin":
        bitcoin.SelectParams("mainnet" if network == "main" else "testnet")
        main = network == "main"
        return ChainParams(
            coin=coin,
            network=network,
            hrp=hrp or ("bc" if main else "tb"),
            rpc_port=rpc_port or (8332 if main else 18332),
            p2p_port=p2p_port or (8333 if main else 18333),
            subsidy=subsidy if subsidy is not None else 50 * COIN,
            halving_interval=halving_interval or 210_000,
            p2pkh_version=0 if main else 111,
            p2sh_version=5 if main else 196,
            # The real genesis block has a real-difficulty header; the simulated chain mines
            # with the regtest target on top of a synthetic genesis instead (README).
            genesis=_synthetic_genesis(coin, network),
            emulate=emulate or "v30",
            currency_name="Bitcoin",
        )
    azc = coin == "azcoin"
    return ChainParams(
        coin=coin,
        network=network,
        hrp=hrp or ("az" if azc else coin[:4]),
        rpc_port=rpc_port or (19332 if azc else 0),
        p2p_port=p2p_port or (19333 if azc else 0),
        subsidy=subsidy if subsidy is not None else 187_500_000,
        halving_interval=halving_interval or 262_800,
        p2pkh_version=None,  # AZCoin has no base58 addresses
        p2sh_version=None,
        genesis=_synthetic_genesis(coin, network),
        emulate=emulate or "v23",
        currency_name="Bitcoin",
    )
