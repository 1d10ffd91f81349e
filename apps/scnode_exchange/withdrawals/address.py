"""Segwit address check for a chain's human-readable part (BIP 173 bech32 for witness v0,
BIP 350 bech32m for v1+), so a withdrawal to a mistyped or other-chain address is refused at
the request instead of failing (or worse) at the wallet.

Only segwit addresses are accepted: every chain of an SC Node hands out bech32 addresses, and
legacy base58 addresses are refused with a clear reason (documented limit).
"""

from __future__ import annotations

from embit import bech32


class AddressError(ValueError):
    """The text is not a valid segwit address of the expected chain."""


def _polymod(values: list[int]) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= generator[i] if ((top >> i) & 1) else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convertbits(data: list[int], frombits: int, tobits: int) -> list[int] | None:
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if bits >= frombits or ((acc << (tobits - bits)) & maxv):
        return None
    return out


def decode_segwit(hrp: str, address: str) -> tuple[int, bytes]:
    """``(witness version, program)`` of ``address`` for ``hrp``; AddressError otherwise.

    The bech32/bech32m arithmetic is embit's (BIP 173/350 reference code); the checks around it
    turn each way an address can be wrong into a reason the member can act on."""
    if not 14 <= len(address) <= 90:
        raise AddressError("address length is not that of a segwit address")
    sep = address.rfind("1")
    if sep < 1 or sep + 7 > len(address):
        raise AddressError("not a bech32 (segwit) address; legacy addresses are not accepted")
    if address.lower() != address and address.upper() != address:
        raise AddressError("address mixes upper and lower case")
    got_hrp = address[:sep].lower()
    if got_hrp != hrp:
        raise AddressError(f"address is for another network ({got_hrp}1…, expected {hrp}1…)")
    encoding, _, data = bech32.bech32_decode(address)
    if encoding is None or not data:
        raise AddressError("address checksum is wrong (a typo?)")
    version = data[0]
    program = bech32.convertbits(data[1:], 5, 8, False)
    if version > 16 or program is None or not 2 <= len(program) <= 40:
        raise AddressError("address does not encode a witness program")
    if version == 0 and len(program) not in (20, 32):
        raise AddressError("witness v0 program must be 20 or 32 bytes")
    if (version == 0) != (encoding == bech32.Encoding.BECH32):
        raise AddressError("wrong checksum variant for this witness version")
    return version, bytes(program)


def encode_segwit(hrp: str, version: int, program: bytes) -> str:
    """Encode a segwit address (tests use it to make valid and near-valid addresses)."""
    encoded = bech32.encode(hrp, version, list(program))
    if encoded is None:  # embit refuses invalid programs (e.g. v0 of 21 bytes): encode anyway
        spec = bech32.Encoding.BECH32 if version == 0 else bech32.Encoding.BECH32M
        data = [version, *bech32.convertbits(list(program), 8, 5)]
        encoded = bech32.bech32_encode(spec, hrp, data)
    return str(encoded)
