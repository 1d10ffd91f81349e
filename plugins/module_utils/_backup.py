# Copyright (c) 2026 Satoshiware SC Node developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Backup files of the node: age encryption, archives, manifests, retention, SQLite copies.

Private to this collection (leading underscore): used by ``wallet_backup`` and
``wallet_restore`` only; its interface may change between releases.

A backup is two files in the backup directory:

* ``<kind>-<subject>-<UTC stamp>.tar.age``: a tar archive of the backed-up files, encrypted
  with age to one or more recipients. Nothing in clear ever lands in the backup directory.
* ``<same name>.manifest.json``: what it holds (kind, subject, chain, wallet, height, best
  block, the files in the archive with their sizes and sha256) and the sha256 of the encrypted
  file, which a restore checks before it touches anything.

Encryption uses the ``pyrage`` library when the managed node has it, else the ``age`` command
(Debian package ``age``); both write and read the same age v1 format.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

MANIFEST_SUFFIX = ".manifest.json"
ARCHIVE_SUFFIX = ".tar.age"
MANIFEST_FORMAT = "scnode-backup-1"
SQLITE_HEADER = b"SQLite format 3\x00"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
CREATED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
ENGINES = ("auto", "pyrage", "cli")


class BackupError(Exception):
    """Anything that stops a backup or a restore; the message is meant for the operator."""


# --- age ---------------------------------------------------------------------------------------


def _pyrage() -> Any:
    try:
        import pyrage  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return pyrage


def age_engine(preference: str = "auto") -> str:
    """Which implementation encrypts: ``pyrage`` (library) or ``cli`` (the ``age`` command)."""
    if preference not in ENGINES:
        raise BackupError("encryption engine must be one of %s" % ", ".join(ENGINES))
    if preference in ("auto", "pyrage") and _pyrage() is not None:
        return "pyrage"
    if preference == "pyrage":
        raise BackupError("the Python library pyrage is not installed on this host")
    if shutil.which("age") is None:
        raise BackupError(
            "neither the Python library pyrage nor the age command is available on this host"
            " (install the Debian package age)"
        )
    return "cli"


def validate_recipients(recipients: list[str]) -> list[str]:
    """Refuse an empty list and anything that is not an age or SSH public key."""
    cleaned = [r.strip() for r in recipients if r and r.strip()]
    if not cleaned:
        raise BackupError("at least one age recipient is needed: backups are never kept in clear")
    for recipient in cleaned:
        if not (recipient.startswith("age1") or recipient.startswith("ssh-")):
            raise BackupError(
                "not an age recipient (age1...) or SSH public key (ssh-...): %s" % recipient[:20]
            )
    return cleaned


def _pyrage_recipient(pyrage: Any, text: str) -> Any:
    try:
        if text.startswith("ssh-"):
            return pyrage.ssh.Recipient.from_str(text)
        return pyrage.x25519.Recipient.from_str(text)
    except Exception as exc:  # pyrage raises its own RecipientError, or ValueError
        raise BackupError("invalid age recipient %s: %s" % (text[:20], exc)) from None


def _pyrage_identities(pyrage: Any, path: str) -> list[Any]:
    identities = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line.startswith("AGE-SECRET-KEY-"):
                try:
                    identities.append(pyrage.x25519.Identity.from_str(line))
                except Exception:
                    raise BackupError("invalid age key in the identity file %s" % path) from None
    if not identities:
        raise BackupError("no age identity (AGE-SECRET-KEY-...) in %s" % path)
    return identities


def encrypt_file(source: str, destination: str, recipients: list[str], engine: str) -> None:
    """Encrypt ``source`` to ``destination`` for every recipient."""
    recipients = validate_recipients(recipients)
    if engine == "pyrage":
        pyrage = _pyrage()
        keys = [_pyrage_recipient(pyrage, r) for r in recipients]
        try:
            pyrage.encrypt_file(source, destination, keys)
        except Exception as exc:
            raise BackupError("age encryption failed: %s" % exc) from None
        return
    argv = ["age", "--encrypt", "--output", destination]
    for recipient in recipients:
        argv += ["--recipient", recipient]
    _run([*argv, source], "age encryption")


def decrypt_file(source: str, destination: str, identity_file: str, engine: str) -> None:
    """Decrypt ``source`` with the identities in ``identity_file``."""
    if not Path(identity_file).is_file():
        raise BackupError("the age identity file %s does not exist" % identity_file)
    if engine == "pyrage":
        pyrage = _pyrage()
        identities = _pyrage_identities(pyrage, identity_file)
        try:
            pyrage.decrypt_file(source, destination, identities)
        except Exception as exc:
            raise BackupError(
                "cannot decrypt %s with the identity in %s: %s" % (source, identity_file, exc)
            ) from None
        return
    _run(
        ["age", "--decrypt", "--identity", identity_file, "--output", destination, source],
        "age decryption of %s" % source,
    )


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    except OSError as exc:
        raise BackupError("%s: cannot run %s: %s" % (what, argv[0], exc)) from None
    if done.returncode != 0:
        raise BackupError("%s failed: %s" % (what, (done.stderr or done.stdout).strip()[:500]))
    return done.stdout


# --- files -------------------------------------------------------------------------------------


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def private_dir(path: str, owner: str | None = None) -> None:
    """Create ``path`` (mode 0700); hand it to ``owner`` (a daemon that writes into it)."""
    Path(path).mkdir(mode=0o700, parents=True, exist_ok=True)
    Path(path).chmod(0o700)
    if owner:
        import pwd

        try:
            entry = pwd.getpwnam(owner)
        except KeyError:
            raise BackupError("no such user: %s" % owner) from None
        os.chown(path, entry.pw_uid, entry.pw_gid)


def install_file(
    source: str, destination: str, mode: int, owner: str | None = None, group: str | None = None
) -> None:
    """Copy ``source`` over ``destination`` atomically (temp file in the same dir + rename)."""
    fd, name = tempfile.mkstemp(prefix=".scnode-restore-", dir=Path(destination).parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(mode)
        if owner or group:
            shutil.chown(tmp, owner, group)
        tmp.replace(destination)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str, value: Any) -> None:
    """Write JSON atomically with mode 0600."""
    fd, name = tempfile.mkstemp(prefix=".scnode-", dir=Path(path).parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(value, out, indent=2, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(0o600)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def is_sqlite(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def sqlite_integrity(path: str) -> str:
    """``PRAGMA integrity_check`` of a SQLite file: ``ok`` or the problems it lists."""
    try:
        db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
        try:
            rows = db.execute("PRAGMA integrity_check").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return "; ".join(str(row[0]) for row in rows)


def sqlite_copy(source: str, destination: str) -> None:
    """A consistent copy of a live SQLite database with SQLite's online backup API.

    Copying the file itself while the daemon writes is unsafe; the backup API copies a
    snapshot and starts over if another connection writes meanwhile.
    """
    if not Path(source).is_file():
        raise BackupError("the database %s does not exist" % source)
    try:
        src = sqlite3.connect("file:%s?mode=ro" % source, uri=True, timeout=30)
        dst = sqlite3.connect(destination)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError("cannot copy the SQLite database %s: %s" % (source, exc)) from None
    Path(destination).chmod(0o600)
    result = sqlite_integrity(destination)
    if result != "ok":
        raise BackupError("the copy of %s fails its integrity check: %s" % (source, result))


# --- archives ----------------------------------------------------------------------------------


def make_archive(members: list[tuple[str, str]], destination: str) -> list[dict[str, Any]]:
    """Write a tar of ``(name in archive, path)`` pairs; returns name, size and sha256 of each."""
    described = []
    with tarfile.open(destination, "w") as archive:
        for name, path in members:
            info = archive.gettarinfo(path, arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with open(path, "rb") as handle:
                archive.addfile(info, handle)
            described.append({"name": name, "size": info.size, "sha256": sha256_file(path)})
    Path(destination).chmod(0o600)
    return described


def extract_archive(source: str, directory: str, expected: list[dict[str, Any]]) -> dict[str, str]:
    """Extract the regular files of a backup archive; check each against the manifest.

    Returns name -> extracted path. Only plain file names are accepted (no directories, no
    links, no ``..``), so a crafted archive cannot write outside ``directory``.
    """
    wanted = {entry["name"]: entry for entry in expected}
    extracted: dict[str, str] = {}
    with tarfile.open(source, "r") as archive:
        for info in archive.getmembers():
            name = info.name
            if not info.isfile() or "/" in name or name in ("", ".", "..") or name not in wanted:
                raise BackupError("unexpected entry in the backup archive: %r" % name)
            path = str(Path(directory) / name)
            handle = archive.extractfile(info)
            if handle is None:
                raise BackupError("cannot read %r from the backup archive" % name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with handle, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(handle, out)
            if sha256_file(path) != wanted[name]["sha256"]:
                raise BackupError("%s in the archive does not match its manifest entry" % name)
            extracted[name] = path
    missing = sorted(set(wanted) - set(extracted))
    if missing:
        raise BackupError("the backup archive lacks %s" % ", ".join(missing))
    return extracted


# --- naming, manifests, retention --------------------------------------------------------------


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def safe_name(text: str) -> str:
    """A file-name-safe form of a subject (wallet names may hold slashes or spaces)."""
    out = "".join(c if c.isalnum() or c in "._-" else "_" for c in text)
    return out.strip(".") or "_"


def backup_basename(kind: str, subject: str, created: datetime.datetime, directory: str) -> str:
    """``<kind>-<subject>-<stamp>``; a suffix keeps two backups of one second apart."""
    base = "%s-%s-%s" % (kind, safe_name(subject), created.strftime(STAMP_FORMAT))
    name, counter = base, 1
    while (Path(directory) / (name + MANIFEST_SUFFIX)).exists() or (
        Path(directory) / (name + ARCHIVE_SUFFIX)
    ).exists():
        counter += 1
        name = "%s-%d" % (base, counter)
    return name


def parse_created(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, CREATED_FORMAT).replace(tzinfo=datetime.timezone.utc)


def read_manifest(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BackupError("cannot read the backup manifest %s: %s" % (path, exc)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise BackupError("%s is not a backup manifest of this collection" % path)
    for key in ("kind", "subject", "file", "sha256", "created", "files"):
        if key not in manifest:
            raise BackupError("the backup manifest %s lacks %r" % (path, key))
    return manifest


def verify_backup(manifest_path: str, backup_file: str | None = None) -> tuple[dict[str, Any], str]:
    """Read a manifest and check the encrypted file's sha256 against it (nothing else touched).

    Returns the manifest and the path of the encrypted file.
    """
    manifest = read_manifest(manifest_path)
    path = backup_file or str(Path(manifest_path).parent / Path(manifest["file"]).name)
    if not Path(path).is_file():
        raise BackupError("the backup file %s does not exist" % path)
    actual = sha256_file(path)
    if actual != manifest["sha256"]:
        raise BackupError(
            "the backup file %s does not match its manifest (sha256 %s, manifest says %s):"
            " refusing to restore from it" % (path, actual, manifest["sha256"])
        )
    return manifest, path


def list_backups(directory: str, kind: str, subject: str) -> list[tuple[datetime.datetime, str]]:
    """(created, manifest path) of every backup of ``kind``/``subject`` in ``directory``."""
    found: list[tuple[datetime.datetime, str]] = []
    if not Path(directory).is_dir():
        return found
    for entry in sorted(Path(directory).iterdir()):
        if not entry.name.endswith(MANIFEST_SUFFIX):
            continue
        path = str(entry)
        try:
            manifest = read_manifest(path)
            created = parse_created(manifest["created"])
        except (BackupError, ValueError):
            continue  # not ours, or damaged: never deleted by retention
        if manifest["kind"] == kind and manifest["subject"] == subject:
            found.append((created, path))
    return found


def expired(
    backups: list[tuple[datetime.datetime, str]], keep_daily: int, keep_weekly: int
) -> list[str]:
    """Which backups retention removes: keep the newest of each of the last ``keep_daily`` days
    and of each of the last ``keep_weekly`` ISO weeks that have a backup. The newest backup is
    always kept.
    """
    ordered = sorted(backups, key=lambda item: item[0], reverse=True)
    keep = set()
    if ordered:
        keep.add(ordered[0][1])
    for limit, bucket in (
        (keep_daily, lambda when: when.date()),
        (keep_weekly, lambda when: tuple(when.isocalendar())[:2]),
    ):
        seen: list[Any] = []
        for created, path in ordered:
            key = bucket(created)
            if key in seen:
                continue
            if len(seen) >= limit:
                break
            seen.append(key)
            keep.add(path)
    return [path for _created, path in ordered if path not in keep]


def remove_backup(manifest_path: str) -> list[str]:
    """Delete a backup's encrypted file and its manifest; returns the paths removed."""
    removed = []
    manifest = read_manifest(manifest_path)
    archive = Path(manifest_path).parent / Path(manifest["file"]).name
    for path in (archive, Path(manifest_path)):
        if path.exists():
            path.unlink()
            removed.append(str(path))
    return removed


# --- Core Lightning ----------------------------------------------------------------------------


def lightning_call(rpc_file: str, method: str, params: Any = None, timeout: float = 30.0) -> Any:
    """One JSON-RPC call on lightningd's unix socket (answers end with a blank line)."""
    request = {"jsonrpc": "2.0", "id": "scnode-backup", "method": method, "params": params or {}}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(rpc_file)
        sock.sendall(json.dumps(request).encode("utf-8"))
        buffer = io.BytesIO()
        while not buffer.getvalue().endswith(b"\n\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer.write(chunk)
    except OSError as exc:
        raise BackupError("cannot talk to lightningd at %s: %s" % (rpc_file, exc)) from None
    finally:
        sock.close()
    try:
        reply = json.loads(buffer.getvalue().decode("utf-8"))
    except ValueError:
        raise BackupError("lightningd at %s answered something not JSON" % rpc_file) from None
    if reply.get("error"):
        raise BackupError("lightningd %s: %s" % (method, reply["error"].get("message")))
    return reply.get("result")


def lightning_running(rpc_file: str) -> bool:
    """True when something accepts connections on lightningd's RPC socket."""
    if not Path(rpc_file).exists():
        return False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2)
    try:
        sock.connect(rpc_file)
    except OSError:
        return False
    finally:
        sock.close()
    return True


# --- PostgreSQL --------------------------------------------------------------------------------


def postgres_target(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without its password, and the environment that carries the password.

    SQLAlchemy-style driver suffixes (``postgresql+psycopg://``) are dropped; the password goes
    to ``PGPASSWORD`` so it never shows in the process list.
    """
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise BackupError("not a PostgreSQL URL")
    env = dict(os.environ)
    netloc = parts.hostname or ""
    if parts.hostname and ":" in parts.hostname:
        netloc = "[%s]" % parts.hostname
    if parts.port:
        netloc += ":%d" % parts.port
    if parts.username:
        netloc = "%s@%s" % (parts.username, netloc)
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
    return urlunsplit((scheme, netloc, parts.path, parts.query, "")), env


def database_kind(url: str) -> str:
    """``sqlite`` or ``postgresql`` from a SQLAlchemy database URL."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise BackupError("unsupported database URL scheme %r (sqlite or postgresql)" % scheme)


def sqlite_path(url: str) -> str:
    """The file of ``sqlite:////abs/path`` (absolute paths only: a backup needs to know it)."""
    prefix = url.split(":", 1)[0] + ":///"
    path = url[len(prefix) :].split("?", 1)[0]
    if not url.startswith(prefix) or not path.startswith("/"):
        raise BackupError("the SQLite URL must name an absolute path (sqlite:////var/lib/...)")
    return path


def pg_dump(url: str, destination: str) -> None:
    target, env = postgres_target(url)
    _run(["pg_dump", "--format=custom", "--file", destination, "--dbname", target], "pg_dump", env)
    Path(destination).chmod(0o600)
    _run(["pg_restore", "--list", destination], "pg_restore --list (dump check)")


def pg_table_count(url: str) -> int:
    target, env = postgres_target(url)
    out = _run(
        [
            "psql",
            "--no-psqlrc",
            "--tuples-only",
            "--no-align",
            "--dbname",
            target,
            "--command",
            "SELECT count(*) FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
        ],
        "psql",
        env,
    )
    return int(out.strip() or "0")


def pg_restore(url: str, dump: str) -> None:
    target, env = postgres_target(url)
    _run(
        [
            "pg_restore",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            "--dbname",
            target,
            dump,
        ],
        "pg_restore",
        env,
    )
