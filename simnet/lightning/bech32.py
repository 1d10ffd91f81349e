"""Bech32 / bech32m (BIP 173 / BIP 350) and segwit addresses, without the 90-character limit.

BOLT11 invoices are bech32 strings longer than the BIP 173 limit, so this codec has none.
"""

from __future__ import annotations

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_CONST = 1
_BECH32M_CONST = 0x2BC830A3


class Bech32Error(ValueError):
    """The string is not valid bech32."""


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
    return [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]


def encode(hrp: str, data: list[int], *, bech32m: bool = False) -> str:
    """Encode 5-bit groups under a human-readable part."""
    const = _BECH32M_CONST if bech32m else _BECH32_CONST
    values = _hrp_expand(hrp) + data
    polymod = _polymod([*values, 0, 0, 0, 0, 0, 0]) ^ const
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(CHARSET[d] for d in data + checksum)


def decode(text: str) -> tuple[str, list[int], bool]:
    """Decode to (hrp, 5-bit groups without checksum, is_bech32m)."""
    if any(ord(x) < 33 or ord(x) > 126 for x in text):
        raise Bech32Error("invalid character")
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("mixed case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise Bech32Error("invalid separator position")
    if any(x not in CHARSET for x in text[pos + 1 :]):
        raise Bech32Error("invalid data character")
    hrp = text[:pos]
    data = [CHARSET.find(x) for x in text[pos + 1 :]]
    const = _polymod(_hrp_expand(hrp) + data)
    if const not in (_BECH32_CONST, _BECH32M_CONST):
        raise Bech32Error("invalid checksum")
    return hrp, data[:-6], const == _BECH32M_CONST


def convertbits(
    data: bytes | list[int], frombits: int, tobits: int, *, pad: bool = True
) -> list[int]:
    """Regroup a sequence of frombits-wide integers into tobits-wide ones."""
    acc = 0
    bits = 0
    ret: list[int] = []
    maxv = (1 << tobits) - 1
    for value in data:
        if value < 0 or value >> frombits:
            raise Bech32Error("invalid value")
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            ret.append((acc >> bits) & maxv)
    if pad:
        if bits:
            ret.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        raise Bech32Error("invalid padding")
    return ret


def segwit_address(hrp: str, version: int, program: bytes) -> str:
    """A segwit address: v0 in bech32, v1+ in bech32m."""
    return encode(hrp, [version, *convertbits(program, 8, 5)], bech32m=version > 0)


def segwit_decode(hrp: str, address: str) -> tuple[int, bytes]:
    """(witness version, program) of a segwit address of the given HRP."""
    got_hrp, data, is_m = decode(address)
    if got_hrp != hrp or not data:
        raise Bech32Error("wrong hrp")
    version = data[0]
    program = bytes(convertbits(data[1:], 5, 8, pad=False))
    if version > 16 or not 2 <= len(program) <= 40 or is_m != (version > 0):
        raise Bech32Error("invalid witness program")
    if version == 0 and len(program) not in (20, 32):
        raise Bech32Error("invalid v0 program length")
    return version, program


def script_for_address(hrp: str, address: str) -> bytes:
    """The scriptPubKey an address pays to."""
    version, program = segwit_decode(hrp, address)
    op_version = 0 if version == 0 else 0x50 + version
    return bytes([op_version, len(program)]) + program


def address_for_script(hrp: str, script: bytes) -> str | None:
    """The segwit address of a scriptPubKey, or None when it is not a witness program."""
    if len(script) < 4 or script[1] != len(script) - 2:
        return None
    if script[0] == 0:
        version = 0
    elif 0x51 <= script[0] <= 0x60:
        version = script[0] - 0x50
    else:
        return None
    return segwit_address(hrp, version, script[2:])
