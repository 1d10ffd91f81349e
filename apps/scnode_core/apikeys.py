"""API keys of the node APIs: format, hashing at rest, constant-time check, scopes, rotation.

A key looks like ``scnk_<key id>_<secret>``: the id (8 hex characters) names the key in logs,
audit entries and the keys file without revealing it; the secret is 32 random bytes in
URL-safe base64. Servers keep only ``sha256(secret)``: the secret has 256 bits of entropy, so a
slow password hash (argon2) would add latency to every request without adding safety.

Several keys are valid at once so that rotation has a grace period: the rotation job adds the
new key, clients switch, and the old key gets ``not_after`` and then disappears.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

KEY_PREFIX = "scnk"
_KEY_RE = re.compile(r"^scnk_(?P<id>[0-9a-f]{8})_(?P<secret>[A-Za-z0-9_-]{43})$")
# Compared against when the presented id is unknown, so a miss costs the same as a hit.
_DUMMY_HASH = hashlib.sha256(b"scnode-unknown-key").hexdigest()


class ApiKeyError(ValueError):
    """A key or keys file that cannot be used; the message never contains a secret."""


@dataclass(frozen=True)
class NewApiKey:
    """A freshly generated key: ``token`` is shown once to the client side, never stored."""

    key_id: str
    token: str
    record: ApiKeyRecord


@dataclass(frozen=True)
class ApiKeyRecord:
    """What the server stores about one key."""

    key_id: str
    secret_sha256: str
    scopes: frozenset[str]
    name: str = ""
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    not_after: datetime | None = None

    def valid_at(self, when: datetime) -> bool:
        return self.not_after is None or when < self.not_after

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.key_id,
            "sha256": self.secret_sha256,
            "scopes": sorted(self.scopes),
            "name": self.name,
            "created": self.created.isoformat(),
            "not_after": self.not_after.isoformat() if self.not_after else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiKeyRecord:
        try:
            key_id = str(data["id"])
            digest = str(data["sha256"])
            scopes = frozenset(str(s) for s in data["scopes"])
            created = datetime.fromisoformat(str(data["created"]))
            not_after_raw = data.get("not_after")
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiKeyError(f"malformed API key record: {exc}") from None
        if not re.fullmatch(r"[0-9a-f]{8}", key_id):
            raise ApiKeyError(f"malformed API key id {key_id!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ApiKeyError(f"malformed hash for API key {key_id}")
        not_after = datetime.fromisoformat(str(not_after_raw)) if not_after_raw else None
        return cls(key_id, digest, scopes, str(data.get("name", "")), created, not_after)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def generate(scopes: Iterable[str], name: str = "") -> NewApiKey:
    """Make a new random key with the given scopes."""
    key_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    token = f"{KEY_PREFIX}_{key_id}_{secret}"
    record = ApiKeyRecord(key_id, _digest(secret), frozenset(scopes), name)
    return NewApiKey(key_id, token, record)


@dataclass(frozen=True)
class Principal:
    """Who a request authenticated as."""

    key_id: str
    name: str
    scopes: frozenset[str]


class ApiKeyStore:
    """The set of keys a server accepts; immutable, reload by building a new one."""

    def __init__(self, records: Iterable[ApiKeyRecord]) -> None:
        self._by_id: dict[str, ApiKeyRecord] = {}
        for record in records:
            if record.key_id in self._by_id:
                raise ApiKeyError(f"duplicate API key id {record.key_id}")
            self._by_id[record.key_id] = record

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def records(self) -> list[ApiKeyRecord]:
        return list(self._by_id.values())

    def authenticate(self, token: str, now: datetime | None = None) -> Principal | None:
        """Return the key's principal, or None when the token is not a valid, current key."""
        match = _KEY_RE.match(token)
        if match is None:
            hmac.compare_digest(_DUMMY_HASH, _DUMMY_HASH)
            return None
        record = self._by_id.get(match["id"])
        presented = _digest(match["secret"])
        expected = record.secret_sha256 if record else _DUMMY_HASH
        same = hmac.compare_digest(presented, expected)
        if record is None or not same:
            return None
        if not record.valid_at(now or datetime.now(UTC)):
            return None
        return Principal(record.key_id, record.name, record.scopes)

    @classmethod
    def load(cls, path: Path) -> ApiKeyStore:
        """Read a keys file (JSON ``{"keys": [...]}``) written by `save` or the api_key module."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ApiKeyError(f"API keys file {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise ApiKeyError(f"API keys file {path} is not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ApiKeyError(f"API keys file {path} must hold an object with a 'keys' list")
        return cls(ApiKeyRecord.from_json(item) for item in data["keys"])

    def save(self, path: Path, mode: int = 0o640) -> None:
        """Write the keys file atomically (temp file + rename) with the given mode."""
        payload = json.dumps({"keys": [r.to_json() for r in self._by_id.values()]}, indent=2)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload + "\n")
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
