"""Keys, addresses and descriptors: BIP32, bech32 P2WPKH, WIF and descriptor checksums.

python-bitcoinlib 0.12 signs and serializes; it has no BIP32 and no descriptors, so the small
pieces the wallet needs live here (written from BIP32/BIP173/BIP380, not copied).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import bitcoin.base58
import bitcoin.segwit_addr
from bitcoin.core.key import CPubKey
from bitcoin.wallet import CKey

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
_GX = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798
_GY = 0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8
HARDENED = 0x80000000


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hash160(data: bytes) -> bytes:
    return hashlib.new("ripemd160", sha256(data)).digest()


def pubkey_of(secret: bytes) -> bytes:
    """Compressed public key of a 32-byte secret."""
    return bytes(CKey(secret, compressed=True).pub)


def sign_digest(secret: bytes, digest: bytes) -> bytes:
    """DER signature (low-S) of a 32-byte digest."""
    return bytes(CKey(secret, compressed=True).sign(digest))


def verify_digest(pubkey: bytes, digest: bytes, der_sig: bytes) -> bool:
    return bool(CPubKey(pubkey).verify(digest, der_sig))


# --- pure-Python point arithmetic, only for public (watch-only xpub) derivation -------------


def _decompress(pub: bytes) -> tuple[int, int]:
    x = int.from_bytes(pub[1:], "big")
    y_sq = (pow(x, 3, SECP256K1_P) + 7) % SECP256K1_P
    y = pow(y_sq, (SECP256K1_P + 1) // 4, SECP256K1_P)
    if y % 2 != pub[0] % 2:
        y = SECP256K1_P - y
    return x, y


def _point_add(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % SECP256K1_P == 0:
        return None
    if a == b:
        lam = 3 * a[0] * a[0] * pow(2 * a[1], -1, SECP256K1_P) % SECP256K1_P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, SECP256K1_P) % SECP256K1_P
    x = (lam * lam - a[0] - b[0]) % SECP256K1_P
    return x, (lam * (a[0] - x) - a[1]) % SECP256K1_P


def _point_mul(k: int) -> tuple[int, int] | None:
    result: tuple[int, int] | None = None
    addend: tuple[int, int] | None = (_GX, _GY)
    while k:
        if k & 1:
            result = _point_add(result, addend)
        addend = _point_add(addend, addend)
        k >>= 1
    return result


def _compress(point: tuple[int, int]) -> bytes:
    return bytes([2 + (point[1] & 1)]) + point[0].to_bytes(32, "big")


# --- base58check / WIF ---------------------------------------------------------------------


def b58check_encode(payload: bytes) -> str:
    return str(bitcoin.base58.encode(payload + sha256(sha256(payload))[:4]))


def b58check_decode(text: str) -> bytes:
    try:
        raw = bytes(bitcoin.base58.decode(text))
    except Exception as exc:  # InvalidBase58Error is not a ValueError
        raise ValueError(str(exc)) from exc
    if len(raw) < 5 or sha256(sha256(raw[:-4]))[:4] != raw[-4:]:
        raise ValueError("bad base58 checksum")
    return raw[:-4]


def wif_encode(secret: bytes, mainnet: bool) -> str:
    return b58check_encode(bytes([0x80 if mainnet else 0xEF]) + secret + b"\x01")


def wif_decode(text: str) -> tuple[bytes, bool]:
    """Return (secret, compressed) of a WIF key of either network, or raise ValueError."""
    raw = b58check_decode(text)
    if raw[0] not in (0x80, 0xEF):
        raise ValueError("not a WIF key")
    if len(raw) == 34 and raw[-1] == 1:
        return raw[1:33], True
    if len(raw) == 33:
        return raw[1:33], False
    raise ValueError("bad WIF length")


# --- BIP32 ----------------------------------------------------------------------------------

XPRV_MAIN, XPUB_MAIN = bytes.fromhex("0488ade4"), bytes.fromhex("0488b21e")
XPRV_TEST, XPUB_TEST = bytes.fromhex("04358394"), bytes.fromhex("043587cf")


@dataclass(frozen=True)
class ExtKey:
    """A BIP32 node; ``secret`` is None for a public-only node."""

    secret: bytes | None
    pubkey: bytes
    chaincode: bytes
    depth: int = 0
    parent_fp: bytes = b"\0\0\0\0"
    child: int = 0

    @classmethod
    def from_seed(cls, seed: bytes) -> ExtKey:
        digest = hmac.new(b"Bitcoin seed", seed, hashlib.sha512).digest()
        return cls(digest[:32], pubkey_of(digest[:32]), digest[32:])

    @property
    def fingerprint(self) -> bytes:
        return hash160(self.pubkey)[:4]

    def derive(self, index: int) -> ExtKey:
        if index >= HARDENED:
            if self.secret is None:
                raise ValueError("hardened derivation needs a private key")
            data = b"\0" + self.secret + index.to_bytes(4, "big")
        else:
            data = self.pubkey + index.to_bytes(4, "big")
        digest = hmac.new(self.chaincode, data, hashlib.sha512).digest()
        tweak = int.from_bytes(digest[:32], "big")
        if self.secret is not None:
            child = ((tweak + int.from_bytes(self.secret, "big")) % SECP256K1_N).to_bytes(32, "big")
            return ExtKey(
                child, pubkey_of(child), digest[32:], self.depth + 1, self.fingerprint, index
            )
        point = _point_add(_point_mul(tweak), _decompress(self.pubkey))
        assert point is not None
        return ExtKey(None, _compress(point), digest[32:], self.depth + 1, self.fingerprint, index)

    def derive_path(self, path: list[int]) -> ExtKey:
        node = self
        for index in path:
            node = node.derive(index)
        return node

    def _serialize(self, version: bytes, keydata: bytes) -> str:
        return b58check_encode(
            version
            + bytes([self.depth])
            + self.parent_fp
            + self.child.to_bytes(4, "big")
            + self.chaincode
            + keydata
        )

    def xpub(self, mainnet: bool) -> str:
        return self._serialize(XPUB_MAIN if mainnet else XPUB_TEST, self.pubkey)

    def xprv(self, mainnet: bool) -> str:
        assert self.secret is not None
        return self._serialize(XPRV_MAIN if mainnet else XPRV_TEST, b"\0" + self.secret)

    @classmethod
    def parse(cls, text: str) -> ExtKey:
        raw = b58check_decode(text)
        if len(raw) != 78:
            raise ValueError("bad extended key length")
        version, depth, fp = raw[:4], raw[4], raw[5:9]
        child, chaincode, keydata = int.from_bytes(raw[9:13], "big"), raw[13:45], raw[45:]
        if version in (XPRV_MAIN, XPRV_TEST):
            secret = keydata[1:]
            return cls(secret, pubkey_of(secret), chaincode, depth, fp, child)
        if version in (XPUB_MAIN, XPUB_TEST):
            return cls(None, keydata, chaincode, depth, fp, child)
        raise ValueError("unknown extended key version")


def parse_path(text: str) -> list[int]:
    """'84h/1h/0h' or "84'/1'/0'" → indexes."""
    out: list[int] = []
    for part in text.split("/"):
        if not part:
            continue
        hard = part[-1] in "h'H"
        out.append(int(part[:-1] if hard else part) + (HARDENED if hard else 0))
    return out


def format_path(path: list[int], hardened_marker: str) -> str:
    return "/".join(f"{i - HARDENED}{hardened_marker}" if i >= HARDENED else str(i) for i in path)


# --- addresses -----------------------------------------------------------------------------


def p2wpkh_script(pubkey: bytes) -> bytes:
    return b"\x00\x14" + hash160(pubkey)


def p2pkh_script(pubkey_hash: bytes) -> bytes:
    return b"\x76\xa9\x14" + pubkey_hash + b"\x88\xac"


def p2sh_script(script_hash: bytes) -> bytes:
    return b"\xa9\x14" + script_hash + b"\x87"


def segwit_address(hrp: str, script: bytes) -> str | None:
    """Address of a witness-program script, or None for other scripts."""
    if (
        len(script) >= 4
        and script[0] in (0x00, *range(0x51, 0x61))
        and script[1] == len(script) - 2
    ):
        version = 0 if script[0] == 0 else script[0] - 0x50
        encoded = bitcoin.segwit_addr.encode(hrp, version, script[2:])
        return str(encoded) if encoded else None
    return None


def script_address(script: bytes, hrp: str, p2pkh_ver: int, p2sh_ver: int) -> str | None:
    """The address (if any) a scriptPubKey pays to."""
    seg = segwit_address(hrp, script)
    if seg is not None:
        return seg
    if len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return b58check_encode(bytes([p2pkh_ver]) + script[3:23])
    if len(script) == 23 and script[:2] == b"\xa9\x14" and script[22] == 0x87:
        return b58check_encode(bytes([p2sh_ver]) + script[2:22])
    return None


class AddressError(ValueError):
    """An address string that this chain does not accept; the message is Core's."""


def address_script(address: str, hrp: str, p2pkh_ver: int | None, p2sh_ver: int | None) -> bytes:
    """scriptPubKey of an address of this chain, or raise AddressError with Core's wording."""
    if address.lower().startswith(hrp + "1"):
        version, program = bitcoin.segwit_addr.decode(hrp, address)
        if version is None or program is None:
            raise AddressError("Invalid Bech32 address data size")
        head = 0 if version == 0 else 0x50 + version
        return bytes([head, len(program)]) + bytes(program)
    if p2pkh_ver is not None and p2sh_ver is not None:
        try:
            raw = b58check_decode(address)
        except Exception:  # bitcoin.base58 raises its own error types for bad characters
            raw = b""
        if len(raw) == 21 and raw[0] == p2pkh_ver:
            return p2pkh_script(raw[1:])
        if len(raw) == 21 and raw[0] == p2sh_ver:
            return p2sh_script(raw[1:])
    if "1" in address and not address.startswith(("1", "3")) and len(address) > 40:
        raise AddressError("Invalid or unsupported Segwit (Bech32) or Base58 encoding.")
    raise AddressError("Invalid checksum or length of Base58 address (P2PKH or P2SH)")


# --- descriptor checksum (BIP380) ----------------------------------------------------------

_INPUT_CHARSET = (
    "0123456789()[],'/*abcdefgh@:$%{}"
    "IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~"
    'ijklmnopqrstuvwxyzABCDEFGH`#"\\ '
)
_CHECKSUM_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATORS = (0xF5DEE51989, 0xA9FDCA3312, 0x1BAB10E32D, 0x3706B1677A, 0x644D626FFD)


def _polymod(c: int, val: int) -> int:
    top = c >> 35
    c = ((c & 0x7FFFFFFFF) << 5) ^ val
    for bit, gen in enumerate(_GENERATORS):
        if top >> bit & 1:
            c ^= gen
    return c


def descriptor_checksum(desc: str) -> str:
    c, cls, count = 1, 0, 0
    for ch in desc:
        pos = _INPUT_CHARSET.find(ch)
        if pos < 0:
            raise ValueError(f"Invalid character '{ch}' in descriptor")
        c = _polymod(c, pos & 31)
        cls = cls * 3 + (pos >> 5)
        count += 1
        if count == 3:
            c, cls, count = _polymod(c, cls), 0, 0
    if count:
        c = _polymod(c, cls)
    for _ in range(8):
        c = _polymod(c, 0)
    c ^= 1
    return "".join(_CHECKSUM_CHARSET[(c >> (5 * (7 - j))) & 31] for j in range(8))


def with_checksum(desc: str) -> str:
    return f"{desc}#{descriptor_checksum(desc)}"
