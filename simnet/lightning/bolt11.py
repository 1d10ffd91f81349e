"""BOLT11 invoices: a real encoder and decoder (bech32, tagged fields, recoverable signature).

The signature is a real secp256k1 recoverable ECDSA signature over sha256(hrp || data), made
with python-bitcoinlib, so any BOLT11 decoder accepts what this module writes and recovers the
payee from it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from bitcoin.core.key import CPubKey
from bitcoin.wallet import CKey

from simnet.lightning import bech32

# lightningd's network names → BOLT11 currency prefix
CURRENCY = {"bitcoin": "bc", "testnet": "tb", "testnet4": "tb", "signet": "tbs", "regtest": "bcrt"}
DEFAULT_EXPIRY = 3600
DEFAULT_MIN_FINAL_CLTV = 18
# the invoice feature bits lightningd v26 sets (var_onion, payment_secret, basic_mpp)
DEFAULT_FEATURES = bytes.fromhex("02024100")

_MULTIPLIERS = (("m", 10**8), ("u", 10**5), ("n", 100))
_TAG = {
    name: bech32.CHARSET.index(ch)
    for name, ch in {
        "p": "p",
        "s": "s",
        "d": "d",
        "n": "n",
        "h": "h",
        "x": "x",
        "c": "c",
        "f": "f",
        "r": "r",
        "9": "9",
        "m": "m",
    }.items()
}


class Bolt11Error(ValueError):
    """The string is not a valid BOLT11 invoice."""


@dataclass
class Invoice:
    """The content of a BOLT11 invoice."""

    currency: str
    created_at: int
    payment_hash: bytes
    payment_secret: bytes | None = None
    amount_msat: int | None = None
    description: str | None = None
    description_hash: bytes | None = None
    expiry: int = DEFAULT_EXPIRY
    min_final_cltv_expiry: int = DEFAULT_MIN_FINAL_CLTV
    features: bytes = DEFAULT_FEATURES
    payee: bytes = b""
    signature_der: bytes = b""
    routes: list[list[dict[str, object]]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """The `decode` RPC shape (lightningd v26)."""
        out: dict[str, object] = {
            "type": "bolt11 invoice",
            "currency": self.currency,
            "created_at": self.created_at,
            "expiry": self.expiry,
            "payee": self.payee.hex(),
        }
        if self.amount_msat is not None:
            out["amount_msat"] = self.amount_msat
        if self.description is not None:
            out["description"] = self.description
        if self.description_hash is not None:
            out["description_hash"] = self.description_hash.hex()
        out["min_final_cltv_expiry"] = self.min_final_cltv_expiry
        if self.payment_secret is not None:
            out["payment_secret"] = self.payment_secret.hex()
        if self.features:
            out["features"] = self.features.hex()
        if self.routes:
            out["routes"] = self.routes
        out["payment_hash"] = self.payment_hash.hex()
        out["signature"] = self.signature_der.hex()
        out["valid"] = True
        return out


def _int_groups(value: int, min_len: int = 1) -> list[int]:
    groups: list[int] = []
    while value:
        groups.insert(0, value & 31)
        value >>= 5
    while len(groups) < min_len:
        groups.insert(0, 0)
    return groups


def _groups_int(groups: list[int]) -> int:
    value = 0
    for g in groups:
        value = value << 5 | g
    return value


def _tagged(tag: str, groups: list[int]) -> list[int]:
    if len(groups) >= 1024:
        raise Bolt11Error(f"field {tag} too long")
    return [_TAG[tag], len(groups) >> 5, len(groups) & 31, *groups]


def encode_amount(msat: int) -> str:
    """The shortest exact amount string of the human-readable part."""
    for suffix, unit in _MULTIPLIERS:
        if msat % unit == 0:
            return f"{msat // unit}{suffix}"
    return f"{msat * 10}p"


def decode_amount(text: str) -> int:
    """msat of an amount string (`500u`, `2500u`, `20m`, `10p`)."""
    if not text:
        raise Bolt11Error("empty amount")
    units = {"m": 10**8, "u": 10**5, "n": 100}
    if text[-1] == "p":
        pico = int(text[:-1])
        if pico % 10:
            raise Bolt11Error("sub-millisatoshi amount")
        return pico // 10
    if text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    if not text.isdigit():
        raise Bolt11Error("bad amount")
    return int(text) * 10**11


def _der(r: bytes, s: bytes) -> bytes:
    def integer(b: bytes) -> bytes:
        b = b.lstrip(b"\x00") or b"\x00"
        if b[0] & 0x80:
            b = b"\x00" + b
        return bytes([0x02, len(b)]) + b

    body = integer(r) + integer(s)
    return bytes([0x30, len(body)]) + body


def encode(inv: Invoice, key: CKey) -> str:
    """Sign and encode; sets inv.payee and inv.signature_der."""
    hrp = "ln" + inv.currency + (encode_amount(inv.amount_msat) if inv.amount_msat else "")
    data = _int_groups(inv.created_at, 7)
    if inv.payment_secret is not None:
        data += _tagged("s", bech32.convertbits(inv.payment_secret, 8, 5))
    data += _tagged("p", bech32.convertbits(inv.payment_hash, 8, 5))
    if inv.description is not None:
        data += _tagged("d", bech32.convertbits(inv.description.encode(), 8, 5))
    if inv.description_hash is not None:
        data += _tagged("h", bech32.convertbits(inv.description_hash, 8, 5))
    if inv.expiry != DEFAULT_EXPIRY:
        data += _tagged("x", _int_groups(inv.expiry))
    data += _tagged("c", _int_groups(inv.min_final_cltv_expiry))
    if inv.features:
        data += _tagged("9", _int_groups(int.from_bytes(inv.features, "big")))
    digest = hashlib.sha256(hrp.encode() + bytes(bech32.convertbits(data, 5, 8))).digest()
    sig, recid = key.sign_compact(digest)
    inv.payee = bytes(key.pub)
    inv.signature_der = _der(sig[:32], sig[32:])
    return bech32.encode(hrp, data + bech32.convertbits(sig + bytes([recid]), 8, 5))


def decode(text: str) -> Invoice:
    """Parse and check an invoice; the payee is recovered from the signature."""
    try:
        hrp, data, _ = bech32.decode(text.strip())
    except bech32.Bech32Error as exc:
        raise Bolt11Error(f"Bad bech32 string: {exc}") from exc
    if not hrp.startswith("ln") or len(data) < 7 + 104:
        raise Bolt11Error("Bad bech32 string")
    rest = hrp[2:]
    currency = ""
    for cur in sorted(CURRENCY.values(), key=len, reverse=True):
        if rest.startswith(cur):
            currency = cur
            break
    if not currency:
        raise Bolt11Error(f"Unknown currency in {hrp}")
    amount_text = rest[len(currency) :]
    sig_groups = data[-104:]
    body = data[:-104]
    sig = bytes(bech32.convertbits(sig_groups, 5, 8, pad=False))
    inv = Invoice(currency=currency, created_at=_groups_int(body[:7]), payment_hash=b"")
    inv.amount_msat = decode_amount(amount_text) if amount_text else None
    payee: bytes | None = None
    pos = 7
    while pos + 3 <= len(body):
        tag = body[pos]
        length = body[pos + 1] << 5 | body[pos + 2]
        groups = body[pos + 3 : pos + 3 + length]
        pos += 3 + length
        if len(groups) != length:
            raise Bolt11Error("truncated field")
        if tag == _TAG["p"] and length == 52:
            inv.payment_hash = bytes(bech32.convertbits(groups, 5, 8, pad=False)[:32])
        elif tag == _TAG["s"] and length == 52:
            inv.payment_secret = bytes(bech32.convertbits(groups, 5, 8, pad=False)[:32])
        elif tag == _TAG["d"]:
            inv.description = bytes(bech32.convertbits(groups, 5, 8, pad=False)).decode()
        elif tag == _TAG["h"] and length == 52:
            inv.description_hash = bytes(bech32.convertbits(groups, 5, 8, pad=False)[:32])
        elif tag == _TAG["x"]:
            inv.expiry = _groups_int(groups)
        elif tag == _TAG["c"]:
            inv.min_final_cltv_expiry = _groups_int(groups)
        elif tag == _TAG["n"] and length == 53:
            payee = bytes(bech32.convertbits(groups, 5, 8, pad=False)[:33])
        elif tag == _TAG["9"]:
            value = _groups_int(groups)
            inv.features = value.to_bytes((value.bit_length() + 7) // 8, "big")
        elif tag == _TAG["r"]:
            inv.routes.append(_decode_route(bytes(bech32.convertbits(groups, 5, 8, pad=False))))
    if not inv.payment_hash:
        raise Bolt11Error("No valid 'p' field found")
    if inv.description is None and inv.description_hash is None:
        raise Bolt11Error("No valid 'd' or 'h' field found")
    digest = hashlib.sha256(hrp.encode() + bytes(bech32.convertbits(body, 5, 8))).digest()
    recovered = CPubKey.recover_compact(digest, bytes([27 + 4 + sig[64]]) + sig[:64])
    if not recovered:
        raise Bolt11Error("signature recovery failed")
    if payee is not None and bytes(recovered) != payee:
        raise Bolt11Error("signature does not match payee")
    inv.payee = bytes(recovered)
    inv.signature_der = _der(sig[:32], sig[32:64])
    return inv


def _decode_route(raw: bytes) -> list[dict[str, object]]:
    hops: list[dict[str, object]] = []
    for i in range(0, len(raw) - 50, 51):
        hop = raw[i : i + 51]
        scid = int.from_bytes(hop[33:41], "big")
        hops.append(
            {
                "pubkey": hop[:33].hex(),
                "short_channel_id": f"{scid >> 40}x{(scid >> 16) & 0xFFFFFF}x{scid & 0xFFFF}",
                "fee_base_msat": int.from_bytes(hop[41:45], "big"),
                "fee_proportional_millionths": int.from_bytes(hop[45:49], "big"),
                "cltv_expiry_delta": int.from_bytes(hop[49:51], "big"),
            }
        )
    return hops
