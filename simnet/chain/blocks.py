"""Real serialized blocks and transactions: coinbase, witness commitment, merkle root, PoW."""

from __future__ import annotations

from bitcoin.core import (
    CBlock,
    CMutableTransaction,
    CMutableTxIn,
    CMutableTxOut,
    COutPoint,
    CTransaction,
    CTxInWitness,
    CTxWitness,
    Hash,
)
from bitcoin.core.script import CScript, CScriptWitness

WITNESS_RESERVED = b"\0" * 32


def tx_weight(tx: CTransaction) -> int:
    base = len(tx.serialize({"include_witness": False}))
    total = len(tx.serialize())
    return base * 3 + total


def tx_vsize(tx: CTransaction) -> int:
    return (tx_weight(tx) + 3) // 4


def wtxid(tx: CTransaction) -> bytes:
    """Witness txid in internal byte order."""
    return bytes(Hash(tx.serialize()))


def merkle_root(hashes: list[bytes]) -> bytes:
    level = list(hashes)
    if not level:
        return b"\0" * 32
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [bytes(Hash(level[i] + level[i + 1])) for i in range(0, len(level), 2)]
    return level[0]


def _height_push(height: int) -> bytes:
    """BIP34 height push as Core writes it (OP_1..OP_16 for small heights)."""
    if 1 <= height <= 16:
        return bytes([0x50 + height])
    if height == 0:
        return b"\x00"
    raw = height.to_bytes((height.bit_length() + 8) // 8, "little")
    return bytes([len(raw)]) + raw


def witness_commitment_script(others: list[CTransaction]) -> bytes:
    """The coinbase's OP_RETURN witness commitment output script (BIP141)."""
    witness_root = merkle_root([b"\0" * 32] + [wtxid(tx) for tx in others])
    return b"\x6a\x24\xaa\x21\xa9\xed" + bytes(Hash(witness_root + WITNESS_RESERVED))


def make_coinbase(
    height: int,
    script: bytes,
    value: int,
    others: list[CTransaction],
    extra: bytes = b"",
    payouts: list[tuple[bytes, int]] | None = None,
) -> CTransaction:
    """Coinbase with a BIP34 height and a witness commitment over `others`.

    `payouts` (script, sats) come first; `script` gets what is left of `value`.
    """
    payouts = payouts or []
    rest = value - sum(v for _, v in payouts)
    if rest < 0:
        raise ValueError("coinbase payouts exceed the block reward")
    witness_root = merkle_root([b"\0" * 32] + [wtxid(tx) for tx in others])
    commitment = bytes(Hash(witness_root + WITNESS_RESERVED))
    script_sig = CScript(_height_push(height) + (extra or b"\x00"))
    tx = CMutableTransaction(
        [CMutableTxIn(COutPoint(), script_sig, 0xFFFFFFFE)],
        [
            *(CMutableTxOut(v, CScript(s)) for s, v in payouts),
            *([CMutableTxOut(rest, CScript(script))] if rest or not payouts else []),
            CMutableTxOut(0, CScript(b"\x6a\x24\xaa\x21\xa9\xed" + commitment)),
        ],
        nLockTime=0,
        nVersion=2,
    )
    tx.wit = CTxWitness([CTxInWitness(CScriptWitness([WITNESS_RESERVED]))])
    return CTransaction.from_tx(tx)


def target_of(bits: int) -> int:
    exponent = bits >> 24
    return (bits & 0xFFFFFF) << (8 * (exponent - 3))


def solve_header(block: CBlock) -> CBlock:
    """Find a nonce meeting the block's target (trivial at the regtest target)."""
    target = target_of(block.nBits)
    nonce = block.nNonce
    while True:
        candidate = block.get_header().__class__(
            nVersion=block.nVersion,
            hashPrevBlock=block.hashPrevBlock,
            hashMerkleRoot=block.hashMerkleRoot,
            nTime=block.nTime,
            nBits=block.nBits,
            nNonce=nonce,
        )
        if int.from_bytes(candidate.GetHash(), "little") <= target:
            return CBlock(
                nVersion=block.nVersion,
                hashPrevBlock=block.hashPrevBlock,
                hashMerkleRoot=block.hashMerkleRoot,
                nTime=block.nTime,
                nBits=block.nBits,
                nNonce=nonce,
                vtx=block.vtx,
            )
        nonce += 1


def build_block(
    prev_hash: bytes,
    height: int,
    time: int,
    bits: int,
    coinbase: CTransaction,
    txs: list[CTransaction],
) -> CBlock:
    vtx = [coinbase, *txs]
    block = CBlock(
        nVersion=0x20000000,
        hashPrevBlock=prev_hash,
        hashMerkleRoot=merkle_root([bytes(tx.GetTxid()) for tx in vtx]),
        nTime=time,
        nBits=bits,
        nNonce=0,
        vtx=vtx,
    )
    return solve_header(block)


def block_work(bits: int) -> int:
    return (1 << 256) // (target_of(bits) + 1)
