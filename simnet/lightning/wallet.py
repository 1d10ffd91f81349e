"""Keys and on-chain transactions of the stand-in: node key, wallet addresses, funding/close txs.

All keys derive from the 32-byte `hsm_secret`, so a node restored from `hsm_secret` and its
database has the same identity and addresses. Transactions are real, signed, serialized segwit
transactions (python-bitcoinlib), so the chain stand-in or a real bitcoind can parse them.
"""

from __future__ import annotations

import hashlib
import hmac

from bitcoin.core import (
    CMutableTransaction,
    CMutableTxIn,
    CMutableTxOut,
    COutPoint,
    CScriptWitness,
    CTxInWitness,
    CTxWitness,
    Hash160,
    lx,
)
from bitcoin.core.script import (
    OP_2,
    OP_CHECKMULTISIG,
    OP_CHECKSIG,
    OP_DUP,
    OP_EQUALVERIFY,
    OP_HASH160,
    SIGHASH_ALL,
    SIGVERSION_WITNESS_V0,
    CScript,
    SignatureHash,
)
from bitcoin.wallet import CKey

from simnet.lightning import bech32

ADDRESS_HRP = {
    "bitcoin": "bc",
    "testnet": "tb",
    "testnet4": "tb",
    "signet": "tb",
    "regtest": "bcrt",
}
# vbytes of a 1-input P2WPKH spend with 2 outputs; lightningd's estimate is of the same order
TX_VBYTES = 170


def node_key(hsm_secret: bytes) -> CKey:
    """The node key as lightningd's hsmd derives it: HKDF-SHA256(hsm_secret, u32 0, "nodeid")."""
    prk = hmac.new(b"\x00\x00\x00\x00", hsm_secret, hashlib.sha256).digest()
    okm = hmac.new(prk, b"nodeid\x01", hashlib.sha256).digest()
    return CKey(okm, compressed=True)


def derive_key(hsm_secret: bytes, purpose: str, index: int = 0) -> CKey:
    """A deterministic secp256k1 key for one purpose ("node", "wallet", "funding", "outside")."""
    seed = hmac.new(hsm_secret, f"{purpose}/{index}".encode(), hashlib.sha256).digest()
    return CKey(seed, compressed=True)


def p2wpkh_script(pubkey: bytes) -> bytes:
    """scriptPubKey of a P2WPKH output."""
    return bytes([0, 20]) + bytes(Hash160(pubkey))


def p2tr_script(pubkey: bytes) -> bytes:
    """scriptPubKey of a P2TR output using the x-only key untweaked (simulation: never spent)."""
    return bytes([0x51, 32]) + pubkey[1:33]


def funding_script(pub_a: bytes, pub_b: bytes) -> CScript:
    """The 2-of-2 witness script of a channel funding output (keys sorted, as BOLT3)."""
    first, second = sorted((pub_a, pub_b))
    return CScript([OP_2, first, second, OP_2, OP_CHECKMULTISIG])


def p2wsh_script(witness_script: bytes) -> bytes:
    """scriptPubKey of a P2WSH output."""
    return bytes([0, 32]) + hashlib.sha256(witness_script).digest()


def channel_id(funding_txid: str, outnum: int) -> str:
    """BOLT2 channel_id: funding txid (internal byte order) XOR the output index."""
    raw = bytearray(lx(funding_txid))
    raw[30] ^= outnum >> 8
    raw[31] ^= outnum & 0xFF
    return raw.hex()


def build_spend(
    inputs: list[tuple[str, int, int, CKey]],
    outputs: list[tuple[bytes, int]],
) -> CMutableTransaction:
    """A signed transaction spending P2WPKH inputs (txid, vout, sats, key) to (script, sats)."""
    tx = CMutableTransaction(
        [
            CMutableTxIn(COutPoint(lx(txid), vout), nSequence=0xFFFFFFFD)
            for txid, vout, _, _ in inputs
        ],
        [CMutableTxOut(sats, CScript(script)) for script, sats in outputs],
        nVersion=2,
    )
    witnesses = []
    for i, (_, _, sats, key) in enumerate(inputs):
        pub = bytes(key.pub)
        script_code = CScript([OP_DUP, OP_HASH160, Hash160(pub), OP_EQUALVERIFY, OP_CHECKSIG])
        sighash = SignatureHash(
            script_code, tx, i, SIGHASH_ALL, amount=sats, sigversion=SIGVERSION_WITNESS_V0
        )
        sig = key.sign(sighash) + bytes([SIGHASH_ALL])
        witnesses.append(CTxInWitness(CScriptWitness([sig, pub])))
    tx.wit = CTxWitness(witnesses)
    return tx


def unsigned_close(
    funding_txid: str, outnum: int, outputs: list[tuple[bytes, int]]
) -> CMutableTransaction:
    """A mutual close spending the funding output; signed by both peers with `sign_close`."""
    return CMutableTransaction(
        [CMutableTxIn(COutPoint(lx(funding_txid), outnum), nSequence=0xFFFFFFFF)],
        [CMutableTxOut(sats, CScript(script)) for script, sats in outputs if sats > 0],
        nVersion=2,
    )


def sign_close(
    tx: CMutableTransaction, witness_script: CScript, total_sat: int, key: CKey
) -> bytes:
    """One peer's signature of the mutual close."""
    sighash = SignatureHash(
        witness_script, tx, 0, SIGHASH_ALL, amount=total_sat, sigversion=SIGVERSION_WITNESS_V0
    )
    return bytes(key.sign(sighash)) + bytes([SIGHASH_ALL])


def finish_close(
    tx: CMutableTransaction, witness_script: CScript, sigs: dict[bytes, bytes]
) -> None:
    """Attach the 2-of-2 witness (signatures in key order)."""
    ordered = [sigs[pub] for pub in sorted(sigs)]
    tx.wit = CTxWitness([CTxInWitness(CScriptWitness([b"", *ordered, bytes(witness_script)]))])


def address(network: str, script: bytes) -> str:
    """The bech32/bech32m address of a witness scriptPubKey on this network."""
    addr = bech32.address_for_script(ADDRESS_HRP[network], script)
    if addr is None:
        raise ValueError("not a witness program")
    return addr
