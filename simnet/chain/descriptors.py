"""The output descriptors the stand-in understands (BIP380-386 subset).

Forms: wpkh(KEY), pkh(KEY), sh(wpkh(KEY)), combo(KEY), addr(ADDRESS), raw(HEX), where KEY is a
WIF, a hex public key, or an extended key with a path (optionally ranged `/*`), each with an
optional `[fingerprint/path]` origin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from simnet.chain.crypto import (
    HARDENED,
    AddressError,
    ExtKey,
    address_script,
    descriptor_checksum,
    format_path,
    hash160,
    p2pkh_script,
    p2sh_script,
    p2wpkh_script,
    parse_path,
    pubkey_of,
    wif_decode,
    with_checksum,
)
from simnet.chain.errors import RPC_INVALID_ADDRESS_OR_KEY, RPCError
from simnet.chain.params import ChainParams


@dataclass(frozen=True)
class DescScript:
    """One scriptPubKey a descriptor produces, with what is needed to sign for it."""

    script: bytes
    desc: str  # public, inferred form with checksum (as scantxoutset/listunspent show it)
    pubkey: bytes | None = None
    secret: bytes | None = None


@dataclass
class KeyExpr:
    origin_fp: bytes | None
    origin_path: list[int]
    pubkey: bytes | None = None
    secret: bytes | None = None
    ext: ExtKey | None = None
    ext_path: list[int] | None = None
    ranged: bool = False
    hardened_range: bool = False
    text: str = ""

    def at(self, index: int) -> tuple[bytes, bytes | None, list[int]]:
        """(pubkey, secret, full origin path) of this key at `index` (ignored if not ranged)."""
        if self.ext is None:
            assert self.pubkey is not None
            return self.pubkey, self.secret, self.origin_path
        path = list(self.ext_path or [])
        if self.ranged:
            path.append(index + (HARDENED if self.hardened_range else 0))
        node = self.ext.derive_path(path)
        return node.pubkey, node.secret, self.origin_path + path

    def fingerprint(self) -> bytes:
        if self.origin_fp is not None:
            return self.origin_fp
        if self.ext is not None:
            return self.ext.fingerprint if self.ext.depth == 0 else hash160(self.ext.pubkey)[:4]
        assert self.pubkey is not None
        return hash160(self.pubkey)[:4]


_KEY_RE = re.compile(r"^(?:\[([0-9a-fA-F]{8})((?:/[0-9]+['hH]?)*)\])?(.+)$")


def _invalid(msg: str) -> RPCError:
    return RPCError(RPC_INVALID_ADDRESS_OR_KEY, msg)


def parse_key(text: str) -> KeyExpr:
    m = _KEY_RE.match(text)
    if not m:
        raise _invalid(f"key '{text}' is not valid")
    fp_hex, origin_path_text, body = m.groups()
    origin_fp = bytes.fromhex(fp_hex) if fp_hex else None
    origin_path = parse_path(origin_path_text or "")
    key = KeyExpr(origin_fp, origin_path, text=text)
    parts = body.split("/")
    head = parts[0]
    if len(head) in (66, 130) and all(c in "0123456789abcdefABCDEF" for c in head):
        key.pubkey = bytes.fromhex(head)
        return key
    if head[:4] in ("xpub", "tpub", "xprv", "tprv"):
        try:
            key.ext = ExtKey.parse(head)
        except ValueError as exc:
            raise _invalid(f"key '{head}' is not valid") from exc
        rest = parts[1:]
        if rest and rest[-1] in ("*", "*'", "*h", "*H"):
            key.ranged = True
            key.hardened_range = rest[-1] != "*"
            rest = rest[:-1]
        key.ext_path = parse_path("/".join(rest))
        if origin_fp is None:
            key.origin_fp = key.ext.fingerprint if key.ext.depth == 0 else None
        return key
    try:
        secret, _compressed = wif_decode(head)
    except ValueError as exc:
        raise _invalid(f"key '{head}' is not valid") from exc
    key.secret = secret
    key.pubkey = pubkey_of(secret)
    return key


def _origin_text(fp: bytes, path: list[int], marker: str) -> str:
    rel = format_path(path, marker)
    return f"[{fp.hex()}{'/' + rel if rel else ''}]"


@dataclass
class Descriptor:
    kind: str  # wpkh | pkh | sh-wpkh | combo | addr | raw | pk
    key: KeyExpr | None = None
    script: bytes | None = None
    text: str = ""

    @property
    def ranged(self) -> bool:
        return self.key is not None and self.key.ranged

    @property
    def has_private(self) -> bool:
        return self.key is not None and (
            self.key.secret is not None
            or (self.key.ext is not None and self.key.ext.secret is not None)
        )

    def expand(self, index: int, params: ChainParams) -> list[DescScript]:
        marker = "h" if params.v30 else "'"
        if self.kind in ("addr", "raw"):
            assert self.script is not None
            return [DescScript(self.script, with_checksum(self.text))]
        assert self.key is not None
        pub, secret, path = self.key.at(index)
        origin = _origin_text(self.key.fingerprint(), path, marker)
        keytext = f"{origin}{pub.hex()}"
        out: list[DescScript] = []
        kinds = ["pk", "pkh", "wpkh", "sh-wpkh"] if self.kind == "combo" else [self.kind]
        for kind in kinds:
            if kind == "pk":
                script = bytes([len(pub)]) + pub + b"\xac"
                text = f"pk({keytext})"
            elif kind == "pkh":
                script, text = p2pkh_script(hash160(pub)), f"pkh({keytext})"
            elif kind == "wpkh":
                script, text = p2wpkh_script(pub), f"wpkh({keytext})"
            else:
                script = p2sh_script(hash160(p2wpkh_script(pub)))
                text = f"sh(wpkh({keytext}))"
            out.append(DescScript(script, with_checksum(text), pub, secret))
        return out

    def public_text(self, params: ChainParams) -> str:
        """The descriptor with private keys replaced by public ones (getdescriptorinfo)."""
        if self.kind in ("addr", "raw"):
            return self.text
        assert self.key is not None
        key = self.key
        if key.ext is not None:
            ext_pub = key.ext.xpub(params.mainnet_keys)
            rest = format_path(key.ext_path or [], "h" if params.v30 else "'")
            tail = ("/" + rest if rest else "") + ("/*" if key.ranged else "")
            prefix = ""
            if key.origin_fp is not None:
                prefix = _origin_text(key.origin_fp, key.origin_path, "h" if params.v30 else "'")
            keytext = prefix + ext_pub + tail
        else:
            assert key.pubkey is not None
            prefix = ""
            if key.origin_fp is not None:
                prefix = _origin_text(key.origin_fp, key.origin_path, "h" if params.v30 else "'")
            keytext = prefix + key.pubkey.hex()
        inner = {"sh-wpkh": "sh(wpkh({}))"}.get(self.kind, self.kind + "({})")
        return inner.format(keytext)


def split_checksum(text: str, require: bool) -> str:
    if "#" in text:
        body, checksum = text.rsplit("#", 1)
        if descriptor_checksum(body) != checksum:
            raise _invalid(
                f"Provided checksum '{checksum}' does not match computed checksum "
                f"'{descriptor_checksum(body)}'"
            )
        return body
    if require:
        raise _invalid("Missing checksum")
    return text


def parse_descriptor(text: str, params: ChainParams, require_checksum: bool = False) -> Descriptor:
    body = split_checksum(text.strip(), require_checksum)
    m = re.fullmatch(r"(\w+)\((.*)\)", body)
    if not m:
        raise _invalid(f"'{body}' is not a valid descriptor function")
    func, arg = m.groups()
    if func == "sh":
        inner = re.fullmatch(r"wpkh\((.*)\)", arg)
        if not inner:
            raise _invalid("Only sh(wpkh(KEY)) is supported by the simulation")
        return Descriptor("sh-wpkh", parse_key(inner.group(1)), text=body)
    if func in ("wpkh", "pkh", "combo", "pk"):
        return Descriptor(func, parse_key(arg), text=body)
    if func == "addr":
        try:
            script = address_script(arg, params.hrp, params.p2pkh_version, params.p2sh_version)
        except AddressError as exc:
            raise _invalid("Address is not valid") from exc
        return Descriptor("addr", script=script, text=body)
    if func == "raw":
        return Descriptor("raw", script=bytes.fromhex(arg), text=body)
    raise _invalid(f"'{func}(' is not a supported descriptor function in the simulation")


def infer_descriptor(script: bytes, params: ChainParams) -> str:
    """addr()/raw() descriptor of a script we hold no key for."""
    from simnet.chain.crypto import script_address

    address = script_address(
        script, params.hrp, params.p2pkh_version or 0, params.p2sh_version or 5
    )
    body = f"addr({address})" if address else f"raw({script.hex()})"
    return with_checksum(body)
