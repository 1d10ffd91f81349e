"""Proof-of-work arithmetic shared by the translator stand-in and the simulated miners.

Conventions are Stratum V1's (as cgminer/cpuminer and SRI use them): `mining.notify` carries the
previous block hash with each 4-byte word byte-swapped, version/nbits/ntime as big-endian hex;
`mining.submit` carries ntime and nonce as big-endian hex. A share is valid when
SHA256d(header), read as a little-endian integer, is at most the target.

Simulation scale: Python hashes a few hundred hashes a second, so every real hash counts as
`work_scale()` simulated hashes (default 2**32, environment `SIMNET_WORK_SCALE`). Difficulties
and hashrates that appear in logs, the monitoring API and the pool's accounting are simulated
figures (real x scale); the targets the miners hash against are the real, tiny ones.
"""

from __future__ import annotations

import hashlib
import os
import struct
from fractions import Fraction

DIFF1_TARGET = 0x00000000FFFF0000000000000000000000000000000000000000000000000000
MAX_TARGET = (1 << 256) - 1
HASHES_PER_DIFF1 = 1 << 32


def work_scale() -> float:
    """Simulated hashes per real hash."""
    return float(os.environ.get("SIMNET_WORK_SCALE", str(1 << 32)))


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def target_from_difficulty(difficulty: float) -> int:
    """Real target of a real (unscaled) difficulty."""
    if difficulty <= 0:
        return MAX_TARGET
    exact = Fraction(difficulty)
    return min(MAX_TARGET, DIFF1_TARGET * exact.denominator // exact.numerator)


def harder_target(target: int, factor: float) -> int:
    """`target / factor` in exact integer arithmetic (a target `factor` times harder)."""
    exact = Fraction(factor)
    return max(1, target * exact.denominator // exact.numerator)


def difficulty_from_target(target: int) -> float:
    return DIFF1_TARGET / max(target, 1)


def real_difficulty_for(sim_hashrate: float, shares_per_minute: float) -> float:
    """Real share difficulty that gives `shares_per_minute` at `sim_hashrate` (simulated H/s)."""
    sim_difficulty = sim_hashrate * 60.0 / (shares_per_minute * HASHES_PER_DIFF1)
    return sim_difficulty / work_scale()


def swap_words(data: bytes) -> bytes:
    """Byte-swap each 4-byte word (Stratum V1 prevhash encoding, both directions)."""
    return b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))


def merkle_root(coinbase: bytes, branches: list[bytes]) -> bytes:
    root = sha256d(coinbase)
    for branch in branches:
        root = sha256d(root + branch)
    return root


def block_header(
    version: int,
    prevhash_le: bytes,
    merkle: bytes,
    ntime: int,
    nbits: int,
    nonce: int,
) -> bytes:
    """80-byte header; `prevhash_le` in internal (little-endian) byte order."""
    return (
        struct.pack("<I", version) + prevhash_le + merkle + struct.pack("<III", ntime, nbits, nonce)
    )


def hash_value(header: bytes) -> int:
    return int.from_bytes(sha256d(header), "little")


def hash_hex(value: int) -> str:
    """Display form of a hash or target (big-endian hex, 64 digits)."""
    return f"{value:064x}"


def u256_display(value: int) -> str:
    return f"U256({hash_hex(value)})"


def target_struct(value: int) -> str:
    """Rust `Target { head, tail }` debug form (head = low 128 bits, tail = high 128 bits)."""
    return f"Target {{ head: {value & ((1 << 128) - 1)}, tail: {value >> 128} }}"


def le_bytes_list(value: int, size: int = 32) -> str:
    """Rust `Owned([..])` debug form of a little-endian byte array."""
    return ", ".join(str(b) for b in value.to_bytes(size, "little"))


def bytes_list(data: bytes) -> str:
    return ", ".join(str(b) for b in data)


def rust_f32(value: float) -> str:
    """`{}` of an f32 in Rust: no exponent, no trailing `.0` for whole numbers."""
    if value == int(value):
        return str(int(value))
    return repr(float(f"{value:.7g}"))


def rust_f32_debug(value: float) -> str:
    """`{:?}` of an f32: whole numbers keep `.0`."""
    if value == int(value):
        return f"{int(value)}.0"
    return repr(float(f"{value:.7g}"))
