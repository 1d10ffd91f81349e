"""Secrets of sign-in: argon2 password and recovery-code hashes, TOTP (RFC 6238) with replay
protection, recovery codes, and the enrolment QR code as inline SVG."""

from __future__ import annotations

import hmac
import io
import secrets
import time

import pyotp
import qrcode
import qrcode.image.svg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id, RFC 9106 second recommended profile (64 MiB, t=3)
# Recovery codes carry ~60 random bits (not a human-chosen password), and a code is checked
# against every unused one: a light argon2id profile keeps that under ~0.1 s on a slow node.
_code_hasher = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
TOTP_PERIOD = 30
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


def hash_password(value: str) -> str:
    """argon2id hash of a password."""
    return _hasher.hash(value)


def hash_recovery_code(value: str) -> str:
    """argon2id hash (light profile) of a recovery code."""
    return _code_hasher.hash(value)


def verify_secret(stored: str, value: str) -> bool:
    """Whether ``value`` matches the argon2 hash ``stored`` (its parameters are in the hash)."""
    try:
        return _hasher.verify(stored, value)
    except (VerificationError, InvalidHashError):
        return False


def new_totp_secret() -> str:
    """A 160-bit base32 TOTP secret (RFC 4226 recommends ≥ 128 bits)."""
    return pyotp.random_base32(32)


def totp_uri(secret: str, account: str, issuer: str) -> str:
    """The ``otpauth://`` URI authenticator apps read from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def totp_step(secret: str, code: str, last_step: int, now: float | None = None) -> int | None:
    """The time step a code belongs to (now ±1 step for clock drift), or None when the code is
    wrong or its step is not after ``last_step`` (a code works once: no replay)."""
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = int((now if now is not None else time.time()) // TOTP_PERIOD)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.at(step * TOTP_PERIOD), code) and step > last_step:
            return step
    return None


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """Fresh one-time recovery codes (``xxxx-xxxx-xxxx``, ~64 bits each)."""
    return [
        "-".join("".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(4)) for _ in range(3))
        for _ in range(count)
    ]


def normal_recovery_code(code: str) -> str:
    """A typed recovery code as stored (lower case, dashes where they belong)."""
    raw = "".join(ch for ch in code.lower() if ch.isalnum())
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def qr_svg(data: str) -> str:
    """``data`` as an inline SVG QR code (no script, no external resource)."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    out = io.BytesIO()
    image.save(out)
    text = out.getvalue().decode("utf-8")
    # inlined in HTML: no XML declaration, no fixed id (a page may show several codes)
    return text[text.index("<svg") :].replace(' id="qr-path"', "")
