"""Manage a node API's keys file: ``python -m scnode_core.keytool create|list|revoke``.

The keys file (JSON ``{"keys": [...]}``, see `scnode_core.apikeys`) holds hashes only; it is
replaced atomically (temp file + rename in the same directory), mode 0640, and keeps its group
(or takes ``--group``) so the API's service user can read it. A new key's token is shown once:
written to ``--token-file`` (mode 0600, never overwritten) or printed on stdout.

``create --if-missing`` does nothing when the token file already exists: the scnode_apps role
calls it on every run, so initial keys are generated on the first run and never again.
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from scnode_core.apikeys import ApiKeyError, ApiKeyRecord, ApiKeyStore, generate

KEYS_FILE_MODE = 0o640
TOKEN_FILE_MODE = 0o600
_SCOPE_RE = re.compile(r"^[a-z][a-z0-9_:.-]{0,31}$")


class KeyToolError(Exception):
    """A refusal with a message for the operator (never containing a secret)."""


def _load(path: Path, *, missing_ok: bool) -> ApiKeyStore:
    if missing_ok and not path.exists():
        return ApiKeyStore([])
    try:
        return ApiKeyStore.load(path)
    except ApiKeyError as exc:
        raise KeyToolError(str(exc)) from None


def _atomic_write(path: Path, data: str, mode: int, gid: int | None) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory, then rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        if gid is not None:
            os.fchown(fd, -1, gid)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _group_id(path: Path, group: str | None) -> int | None:
    """The group the keys file gets: ``group`` if given, else the existing file's group."""
    if group:
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            raise KeyToolError(f"group {group!r} does not exist") from None
    try:
        return path.stat().st_gid
    except FileNotFoundError:
        return None


def save_store(path: Path, store: ApiKeyStore, group: str | None = None) -> None:
    """Write the keys file atomically, mode 0640, keeping its group (or setting ``group``)."""
    payload = json.dumps({"keys": [r.to_json() for r in store.records]}, indent=2) + "\n"
    _atomic_write(path, payload, KEYS_FILE_MODE, _group_id(path, group))


def create(
    keys_file: Path,
    scopes: Sequence[str],
    name: str = "",
    token_file: Path | None = None,
    group: str | None = None,
) -> tuple[ApiKeyRecord, str]:
    """Add a new key to ``keys_file``; returns its record and token (stored nowhere else)."""
    bad = [s for s in scopes if not _SCOPE_RE.match(s)]
    if bad or not scopes:
        raise KeyToolError(f"scopes must be given and look like 'read', 'deposit': {bad}")
    if token_file is not None and token_file.exists():
        raise KeyToolError(f"token file {token_file} exists; refusing to overwrite a client key")
    store = _load(keys_file, missing_ok=True)
    key = generate(scopes, name=name)
    while any(r.key_id == key.key_id for r in store.records):  # 32-bit ids: retry a clash
        key = generate(scopes, name=name)
    # The hash goes in first: a crash in between leaves an unusable key, never a token the
    # server does not know.
    save_store(keys_file, ApiKeyStore([*store.records, key.record]), group)
    if token_file is not None:
        _atomic_write(token_file, key.token + "\n", TOKEN_FILE_MODE, None)
    return key.record, key.token


def revoke(keys_file: Path, key_id: str, group: str | None = None) -> ApiKeyRecord:
    """Remove the key ``key_id``; the server refuses it from its next reload of the file."""
    store = _load(keys_file, missing_ok=False)
    kept = [r for r in store.records if r.key_id != key_id]
    if len(kept) == len(store):
        raise KeyToolError(f"no key with id {key_id!r} in {keys_file}")
    (removed,) = (r for r in store.records if r.key_id == key_id)
    save_store(keys_file, ApiKeyStore(kept), group)
    return removed


def _age(created: datetime, now: datetime) -> str:
    seconds = max(0, int((now - created).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def describe(
    records: Sequence[ApiKeyRecord], now: datetime | None = None
) -> list[dict[str, object]]:
    """What ``list`` shows of each key: never the hash, never a secret."""
    now = now or datetime.now(UTC)
    return [
        {
            "id": r.key_id,
            "name": r.name,
            "scopes": sorted(r.scopes),
            "created": r.created.isoformat(),
            "age_seconds": max(0, int((now - r.created).total_seconds())),
            "age": _age(r.created, now),
            "not_after": r.not_after.isoformat() if r.not_after else None,
            "valid": r.valid_at(now),
        }
        for r in sorted(records, key=lambda r: r.created)
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scnode_core.keytool", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    new = sub.add_parser("create", help="add a key; the token goes to --token-file or stdout")
    new.add_argument("--keys-file", type=Path, required=True)
    new.add_argument("--scope", action="append", required=True, help="repeat for several")
    new.add_argument("--name", default="", help="who the key is for (shown by list)")
    new.add_argument("--token-file", type=Path, help="write the token here (0600)")
    new.add_argument("--group", help="group of the keys file (default: keep its group)")
    new.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing when --token-file exists (first-run key generation)",
    )

    lst = sub.add_parser("list", help="ids, names, scopes and ages; never secrets")
    lst.add_argument("--keys-file", type=Path, required=True)
    lst.add_argument("--json", action="store_true")

    rev = sub.add_parser("revoke", help="remove a key by id")
    rev.add_argument("--keys-file", type=Path, required=True)
    rev.add_argument("--group", help="group of the keys file (default: keep its group)")
    rev.add_argument("key_id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "create":
            if args.if_missing and args.token_file is None:
                raise KeyToolError("--if-missing needs --token-file")
            if args.if_missing and args.token_file.exists():
                print(f"unchanged: {args.token_file} exists")
                return 0
            record, token = create(
                args.keys_file, args.scope, args.name, args.token_file, args.group
            )
            if args.token_file is None:
                print(token)
            else:
                print(f"created key {record.key_id} ({','.join(sorted(record.scopes))})")
        elif args.command == "list":
            rows = describe(_load(args.keys_file, missing_ok=False).records)
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                print(f"{'ID':<9} {'AGE':>5}  {'SCOPES':<24} NAME")
                for row in rows:
                    state = "" if row["valid"] else f"  (expired {row['not_after']})"
                    scopes = ",".join(row["scopes"])  # type: ignore[arg-type]
                    print(f"{row['id']:<9} {row['age']:>5}  {scopes:<24} {row['name']}{state}")
        else:
            removed = revoke(args.keys_file, args.key_id, args.group)
            print(f"revoked key {removed.key_id} ({removed.name})")
    except (KeyToolError, OSError) as exc:
        print(f"keytool: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
