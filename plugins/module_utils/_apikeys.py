# Copyright (c) 2026 Satoshiware SC Node developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""API keys of the node's apps, for the ``api_key`` module: create, list, rotate, revoke.

Private to this collection (leading underscore): its interface may change between releases.

The format is the apps' (``scnode_core.apikeys`` in the apps wheel, which the apps read): a key
is ``scnk_<id>_<secret>`` (id: 8 hex characters; secret: 32 random bytes in URL-safe base64);
the server's keys file is JSON ``{"keys": [{"id", "sha256", "scopes", "name", "created",
"not_after"}]}`` holding ``sha256(secret)`` only; a key is valid until ``not_after`` (ISO 8601,
none = no end). The module runs on the managed node, which may not have the apps wheel, so the
few lines of the format live here too; the integration tests check that the apps accept what
this file writes.

Rotation keeps the service up: the new key's hash is written to the keys file first (the apps
re-read it when it changes, without a restart), then the client's token file or env file gets
the new key, and the old key stays valid for a grace period (``not_after``) so a client that
still holds it keeps working until it re-reads or restarts. Keys past their ``not_after`` are
removed from the file on the next change.
"""

from __future__ import annotations

import grp
import hashlib
import hmac
import json
import os
import pwd
import re
import secrets
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

KEY_PREFIX = "scnk"
TOKEN_RE = re.compile(r"^scnk_(?P<id>[0-9a-f]{8})_(?P<secret>[A-Za-z0-9_-]{43})$")
SCOPE_RE = re.compile(r"^[a-z][a-z0-9_:.-]{0,31}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ApiKeyModuleError(Exception):
    """A refusal with a message for the operator; it never contains a secret."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(str(text))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def new_key(taken: set[str]) -> tuple[str, str, str]:
    """(key id, token, sha256 of the secret) of a fresh random key whose id is not taken."""
    key_id = secrets.token_hex(4)
    while key_id in taken:  # 32-bit ids: retry a clash
        key_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    return key_id, "%s_%s_%s" % (KEY_PREFIX, key_id, secret), digest(secret)


def token_id(token: str | None) -> str | None:
    match = TOKEN_RE.match(token or "")
    return match.group("id") if match else None


def token_matches(token: str | None, record: dict[str, Any]) -> bool:
    """Whether ``token`` is the key of ``record`` (constant-time hash comparison)."""
    match = TOKEN_RE.match(token or "")
    if match is None or match.group("id") != record["id"]:
        return False
    return hmac.compare_digest(digest(match.group("secret")), str(record["sha256"]))


# --- files ------------------------------------------------------------------------------------


def _gid(group: str | None) -> int | None:
    if not group:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ApiKeyModuleError("group %r does not exist" % group) from None


def _uid(owner: str | None) -> int | None:
    if not owner:
        return None
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise ApiKeyModuleError("user %r does not exist" % owner) from None


def atomic_write(
    path: str, data: str, mode: int, uid: int | None = None, gid: int | None = None
) -> None:
    """Replace ``path`` by a temp file in the same directory, renamed over it.

    Readers see the old or the new file, never half of one. The new file's mtime is made
    to differ from the old one's: the apps notice a change by its mtime, and two writes within
    one tick of the kernel's coarse file clock would otherwise look alike.
    """
    target = Path(path)
    try:
        old_mtime_ns: int | None = target.stat().st_mtime_ns
    except FileNotFoundError:
        old_mtime_ns = None
    fd, tmp_name = tempfile.mkstemp(dir=target.resolve().parent, prefix=".%s." % target.name)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if old_mtime_ns is not None and tmp.stat().st_mtime_ns <= old_mtime_ns:
            bumped = old_mtime_ns + 1_000_000
            os.utime(tmp, ns=(bumped, bumped))
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class KeysFile:
    """A server's keys file: records as dicts (unknown fields are kept as they are)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.exists = Path(path).exists()
        self.records: list[dict[str, Any]] = []
        if self.exists:
            self.records = self._read()

    def _read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except ValueError as exc:
            raise ApiKeyModuleError(
                "keys file %s is not valid JSON: %s" % (self.path, exc)
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ApiKeyModuleError(
                "keys file %s must hold an object with a 'keys' list" % self.path
            )
        records = []
        for item in data["keys"]:
            if (
                not isinstance(item, dict)
                or not re.match(r"^[0-9a-f]{8}$", str(item.get("id", "")))
                or not re.match(r"^[0-9a-f]{64}$", str(item.get("sha256", "")))
                or not isinstance(item.get("scopes"), list)
            ):
                raise ApiKeyModuleError("keys file %s holds a malformed key record" % self.path)
            try:
                parse_time(item.get("created"))
                parse_time(item.get("not_after"))
            except ValueError:
                raise ApiKeyModuleError(
                    "keys file %s: key %s has a malformed date" % (self.path, item["id"])
                ) from None
            records.append(item)
        return records

    def render(self) -> str:
        return json.dumps({"keys": self.records}, indent=2) + "\n"

    def save(self, mode: int, group: str | None) -> None:
        gid = _gid(group)
        if gid is None and self.exists:
            gid = Path(self.path).stat().st_gid
        atomic_write(self.path, self.render(), mode, None, gid)


class TokenClient:
    """A client that keeps its key in a file of its own (the token file: the key and a newline)."""

    def __init__(self, path: str, owner: str | None, group: str | None, mode: int) -> None:
        self.path = path
        self.owner, self.group, self.mode = owner, group, mode

    def describe(self) -> str:
        return self.path

    def read(self) -> str | None:
        try:
            with open(self.path, encoding="utf-8") as handle:
                return handle.read().strip() or None
        except FileNotFoundError:
            return None

    def write(self, token: str) -> None:
        uid, gid = _uid(self.owner), _gid(self.group)
        if Path(self.path).exists():
            info = Path(self.path).stat()
            uid = info.st_uid if uid is None else uid
            gid = info.st_gid if gid is None else gid
        atomic_write(self.path, token + "\n", self.mode, uid, gid)


class EnvClient:
    """A client that reads its key from a variable of its env file (``NAME=value`` lines).

    With ``json_path`` the variable holds JSON (e.g. the exchange's ``SCNODE_EXCHANGE_CHAINS``)
    and the key sits at that path inside it.
    """

    def __init__(
        self,
        path: str,
        var: str,
        json_path: list[str] | None,
        owner: str | None,
        group: str | None,
        mode: int,
    ) -> None:
        if not ENV_NAME_RE.match(var):
            raise ApiKeyModuleError("env_var %r is not a variable name" % var)
        self.path, self.var, self.json_path = path, var, list(json_path or [])
        self.owner, self.group, self.mode = owner, group, mode

    def describe(self) -> str:
        where = "%s in %s" % (self.var, self.path)
        return where + (" at %s" % ".".join(self.json_path) if self.json_path else "")

    def _lines(self) -> list[str]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                return handle.read().splitlines()
        except FileNotFoundError:
            return []

    def _find(self, lines: list[str]) -> tuple[int | None, str | None, str]:
        """(line index, raw value, quote character) of the variable."""
        for index, line in enumerate(lines):
            name, sep, value = line.partition("=")
            name = name.strip()
            if name.startswith("export "):
                name = name[len("export ") :].strip()
            if sep and name == self.var:
                value = value.strip()
                quote = value[0] if value[:1] in ("'", '"') and value[-1:] == value[:1] else ""
                return index, value[1:-1] if quote else value, quote
        return None, None, ""

    def _json(self, raw: str | None) -> Any:
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            raise ApiKeyModuleError("%s does not hold JSON" % self.describe()) from None

    def read(self) -> str | None:
        raw = self._find(self._lines())[1]
        if not self.json_path:
            return raw or None
        node = self._json(raw)
        for part in self.json_path:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node if isinstance(node, str) else None

    def write(self, token: str) -> None:
        lines = self._lines()
        index, raw, quote = self._find(lines)
        if self.json_path:
            document = self._json(raw)
            node = document
            for part in self.json_path[:-1]:
                if not isinstance(node, dict):
                    raise ApiKeyModuleError("%s: %s is not an object" % (self.describe(), part))
                node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ApiKeyModuleError("%s is not inside an object" % self.describe())
            node[self.json_path[-1]] = token
            value = json.dumps(document, separators=(",", ":"), sort_keys=True)
            quote = quote or "'"
        else:
            value = token
        line = "%s=%s%s%s" % (self.var, quote, value, quote)
        if index is None:
            lines.append(line)
        else:
            lines[index] = line
        uid, gid = _uid(self.owner), _gid(self.group)
        mode = self.mode
        if Path(self.path).exists():
            info = Path(self.path).stat()
            uid = info.st_uid if uid is None else uid
            gid = info.st_gid if gid is None else gid
            mode = info.st_mode & 0o7777
        atomic_write(self.path, "\n".join(lines) + "\n", mode, uid, gid)


# --- what the module does ---------------------------------------------------------------------


def describe(record: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What the module shows of a key: never its hash, never a secret."""
    created = parse_time(record.get("created"))
    not_after = parse_time(record.get("not_after"))
    return {
        "id": record["id"],
        "name": record.get("name", ""),
        "scopes": sorted(record.get("scopes", [])),
        "created": created.isoformat() if created else None,
        "age_seconds": max(0, int((now - created).total_seconds())) if created else None,
        "not_after": not_after.isoformat() if not_after else None,
        "valid": not_after is None or now < not_after,
    }


class ApiKeyTask:
    """One run of the module against one keys file and at most one client."""

    def __init__(self, params: dict[str, Any], check_mode: bool, now: datetime | None = None):
        self.params = params
        self.check_mode = check_mode
        self.now = now or utcnow()
        self.keys = KeysFile(params["keys_file"])
        self.before = [describe(r, self.now) for r in self.keys.records]
        self.client = self._client(params)
        self.token: str | None = None
        self.result: dict[str, Any] = {"changed": False, "keys_file": params["keys_file"]}

    @staticmethod
    def _client(params: dict[str, Any]) -> TokenClient | EnvClient | None:
        mode = int(params["client_mode"], 8)
        if params.get("token_file"):
            return TokenClient(
                params["token_file"], params.get("client_owner"), params.get("client_group"), mode
            )
        if params.get("env_file"):
            return EnvClient(
                params["env_file"],
                params["env_var"],
                params.get("env_json_path"),
                params.get("client_owner"),
                params.get("client_group"),
                mode,
            )
        return None

    # --- helpers ---

    def _named(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.keys.records if r.get("name", "") == name]

    def _valid(self, record: dict[str, Any]) -> bool:
        not_after = parse_time(record.get("not_after"))
        return not_after is None or self.now < not_after

    def _current(self, name: str) -> list[dict[str, Any]]:
        """Keys of ``name`` without an end: the ones a rotation supersedes."""
        return [r for r in self._named(name) if not r.get("not_after")]

    def _scopes(self, fallback: list[dict[str, Any]]) -> list[str]:
        scopes = self.params.get("scopes")
        if not scopes:
            if not fallback:
                raise ApiKeyModuleError("scopes are needed to create the first key of a name")
            scopes = fallback[-1].get("scopes", [])
        bad = [s for s in scopes if not SCOPE_RE.match(str(s))]
        if bad:
            raise ApiKeyModuleError("scopes must look like 'read', 'deposit': %s" % bad)
        return sorted(set(scopes))

    def _purge(self) -> list[str]:
        if not self.params["purge_expired"]:
            return []
        expired = [r["id"] for r in self.keys.records if not self._valid(r)]
        self.keys.records = [r for r in self.keys.records if self._valid(r)]
        return expired

    def _issue(self, name: str, scopes: list[str]) -> dict[str, Any]:
        """Add a new key for ``name``; the earlier keys of the name end after the grace period."""
        if self.client is None and not self.params["return_secret"]:
            raise ApiKeyModuleError(
                "the new key's token would be lost: give token_file or env_file (the client"
                " side), or return_secret with no_log"
            )
        key_id, token, sha = new_key({r["id"] for r in self.keys.records})
        ends = self.now + timedelta(seconds=self.params["grace_period"])
        superseded = []
        for record in self._named(name):
            current_end = parse_time(record.get("not_after"))
            if current_end is None or current_end > ends:
                record["not_after"] = ends.isoformat()
                superseded.append(record["id"])
        record = {
            "id": key_id,
            "sha256": sha,
            "scopes": scopes,
            "name": name,
            "created": self.now.isoformat(),
            "not_after": None,
        }
        self.keys.records.append(record)
        self.token = token
        if superseded:
            self.result["previous_key_ids"] = superseded
            self.result["previous_not_after"] = ends.isoformat()
        return record

    def _commit(self) -> None:
        """Server side first, then the client: the server knows a key before anyone uses it."""
        if self.check_mode:
            return
        self.keys.save(int(self.params["keys_file_mode"], 8), self.params.get("keys_file_group"))
        if self.token is not None and self.client is not None:
            self.client.write(self.token)

    # --- states ---

    def run(self) -> dict[str, Any]:
        state = self.params["state"]
        if state == "list":
            return self._list()
        name = self.params.get("name")
        if state == "absent":
            self._absent(name, self.params.get("key_id"))
        else:
            if not name:
                raise ApiKeyModuleError("name is required with state=%s" % state)
            self._present(name, rotate=state == "rotated")
        after = [describe(r, self.now) for r in self.keys.records]
        self.result["keys"] = after
        if self.result["changed"]:
            self.result["diff"] = {
                "before_header": self.keys.path,
                "after_header": self.keys.path,
                "before": _listing(self.before),
                "after": _listing(after),
            }
        return self.result

    def _list(self) -> dict[str, Any]:
        name = self.params.get("name")
        if not self.keys.exists:
            raise ApiKeyModuleError("keys file %s does not exist" % self.keys.path)
        shown = [d for d in self.before if not name or d["name"] == name]
        self.result["keys"] = shown
        if self.client is not None:
            self.result["client_key_id"] = token_id(self.client.read())
        return self.result

    def _absent(self, name: str | None, key_id: str | None) -> None:
        if not name and not key_id:
            raise ApiKeyModuleError("state=absent needs name or key_id")
        removed = [
            r["id"]
            for r in self.keys.records
            if (key_id and r["id"] == key_id) or (not key_id and r.get("name", "") == name)
        ]
        self.keys.records = [r for r in self.keys.records if r["id"] not in removed]
        purged = self._purge()
        self.result["revoked_key_ids"] = removed
        self.result["purged_key_ids"] = purged
        if removed or purged:
            self.result["changed"] = True
            self._commit()

    def _present(self, name: str, rotate: bool) -> None:
        current = self._current(name)
        scopes = self._scopes(current or self._named(name))
        held = self.client.read() if self.client is not None else None
        in_use = next((r for r in current if token_matches(held, r)), None)
        reason = None
        if self.client is not None and in_use is None:
            reason = (
                "the client holds no valid key of this name"
                if current
                else "no key of this name yet"
            )
        elif self.client is None and not current:
            reason = "no key of this name yet"
        elif rotate:
            key = in_use or current[-1]
            age = self.now - (parse_time(key.get("created")) or self.now)
            if age.total_seconds() >= self.params["max_age"]:
                reason = "the key is %d s old (max_age %d s)" % (
                    age.total_seconds(),
                    self.params["max_age"],
                )
        if reason is None:
            key = in_use or current[-1]
            if sorted(key.get("scopes", [])) != scopes:
                key["scopes"] = scopes
                self.result["changed"] = True
                self.result["reason"] = "scopes changed"
        else:
            key = self._issue(name, scopes)
            self.result["changed"] = True
            self.result["reason"] = reason
            self.result["client_updated"] = self.client is not None
        purged = self._purge()
        self.result["purged_key_ids"] = purged
        if purged:
            self.result["changed"] = True
        self.result["key_id"] = key["id"]
        self.result["age_seconds"] = describe(key, self.now)["age_seconds"]
        if self.client is not None:
            self.result["client"] = self.client.describe()
        if self.result["changed"]:
            self._commit()
        if self.token is not None and self.params["return_secret"] and not self.check_mode:
            self.result["token"] = self.token


def _listing(keys: list[dict[str, Any]]) -> str:
    """A diff-friendly text of the keys (no hashes, no ages: only what a change changes)."""
    return "".join(
        "%s %s [%s] created %s%s\n"
        % (
            k["id"],
            k["name"],
            ",".join(k["scopes"]),
            k["created"],
            " not_after %s" % k["not_after"] if k["not_after"] else "",
        )
        for k in keys
    )
