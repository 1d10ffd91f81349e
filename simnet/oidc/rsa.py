"""RSA for the test provider with the standard library only (simnet runs where only aiohttp,
pyzmq and python-bitcoinlib are installed): key generation (Miller-Rabin), RS256 signatures
(RSASSA-PKCS1-v1_5 with SHA-256, RFC 8017 §8.2) and the public key as a JWK (RFC 7517).

The key is generated at start-up and never stored: it signs simulated logins only."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import secrets
from dataclasses import dataclass

# DER prefix of DigestInfo for SHA-256 (RFC 8017 §9.2, note 1)
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % q for q in range(3, math.isqrt(p) + 1, 2))]
PUBLIC_EXPONENT = 65537


def b64url(data: bytes) -> str:
    """Base64url without padding (JOSE)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def _probably_prime(n: int, rounds: int = 40) -> bool:
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (3 << (bits - 2)) | 1  # top two bits: n has 2*bits
        if candidate % PUBLIC_EXPONENT != 1 and _probably_prime(candidate):
            return candidate


@dataclass(frozen=True)
class RsaKey:
    """An RSA private key (n, e, d) with its key id."""

    n: int
    e: int
    d: int
    kid: str

    @classmethod
    def generate(cls, bits: int = 2048) -> RsaKey:
        """A fresh key of ``bits`` bits."""
        while True:
            p, q = _prime(bits // 2), _prime(bits // 2)
            if p == q:
                continue
            phi = (p - 1) * (q - 1)
            if math.gcd(PUBLIC_EXPONENT, phi) != 1:
                continue
            n = p * q
            d = pow(PUBLIC_EXPONENT, -1, phi)
            kid = hashlib.sha256(_int_bytes(n)).hexdigest()[:16]
            return cls(n, PUBLIC_EXPONENT, d, kid)

    @property
    def size(self) -> int:
        """Modulus length in bytes."""
        return (self.n.bit_length() + 7) // 8

    def sign_rs256(self, message: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 signature of ``message`` with SHA-256."""
        t = _SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
        em = b"\x00\x01" + b"\xff" * (self.size - len(t) - 3) + b"\x00" + t
        return pow(int.from_bytes(em, "big"), self.d, self.n).to_bytes(self.size, "big")

    def verify_rs256(self, message: bytes, signature: bytes) -> bool:
        """Check a signature made by :meth:`sign_rs256` (used by the provider's self-test)."""
        if len(signature) != self.size:
            return False
        em = pow(int.from_bytes(signature, "big"), self.e, self.n).to_bytes(self.size, "big")
        t = _SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
        expected = b"\x00\x01" + b"\xff" * (self.size - len(t) - 3) + b"\x00" + t
        return secrets.compare_digest(em, expected)

    def jwk(self) -> dict[str, str]:
        """The public key as a JWK."""
        return {
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": b64url(_int_bytes(self.n)),
            "e": b64url(_int_bytes(self.e)),
        }

    def jwt(self, claims: dict[str, object]) -> str:
        """A compact JWS (RS256) of ``claims``."""
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        return signing_input + "." + b64url(self.sign_rs256(signing_input.encode("ascii")))
