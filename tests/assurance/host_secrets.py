"""Run ON a test host (``python3 -`` over SSH, standard library only, Python 3.11+): print as
JSON every secret the roles and the demo put on this host, ``{"<where>": "<value>", ...}``.

Where secrets live (roles' READMEs): operator API keys ``/etc/scnode/keys/*.token`` and the
client keys ``/etc/scnode/**/*.key`` (not PEM files: a multi-line key is never one log line); secret
files (``*.secret``, the exchange's session secret, ``*.token`` anywhere under the config and
state directories); ``KEY=value`` lines of env/conf files whose key names a password,
passphrase, secret, token or private key (the chain client env with the RPC password,
Lightning's ``bitcoin-rpcpassword``, the dashboard's exchange keys, WireGuard's
``PrivateKey``); the daemons' RPC ``.cookie`` passwords; TOTP seeds in any SQLite database of
our apps (the dashboard's accounts). Key *hashes* (``api-keys.json``, ``rpcauth=``) are not
secrets and are left out. The values are printed for the test to search for; the test never
shows more than their first characters.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

CONFIG_ROOTS = ("/etc/scnode", "/etc/bitcoin", "/etc/azcoin", "/etc/lightning", "/etc/stratum",
                "/etc/wireguard", "/etc/prometheus", "/opt/scnode-lab-demo")  # fmt: skip
STATE_ROOTS = ("/var/lib",)
SECRET_KEY = re.compile(r"(password|passphrase|secret|token|privatekey|private_key|api_key)$", re.I)
NOT_SECRET = re.compile(r"(_file|_files|_path|_dir)$", re.I)
LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z0-9_.-]+)\s*=\s*(.*?)\s*$")
MAX_FILE = 1 << 20


def _text(path: Path) -> str | None:
    try:
        if not path.is_file() or path.stat().st_size > MAX_FILE:
            return None
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _files(roots: tuple[str, ...], depth: int) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        base = Path(root)
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            if len(path.relative_to(base).parts) <= depth and path.is_file():
                found.append(path)
    return found


def collect() -> dict[str, str]:
    secrets: dict[str, str] = {}
    for path in _files(CONFIG_ROOTS, 4) + _files(STATE_ROOTS, 3):
        name = path.name
        if name.endswith((".token", ".secret")) or name in ("session.secret", "session-secret"):
            text = _text(path)
            if text and text.strip():
                secrets[str(path)] = text.strip()
        elif name.endswith(".key") and str(path).startswith("/etc/scnode"):
            text = _text(path)  # API keys given to a client (the dashboard's client-keys)
            if text and text.strip() and "-----BEGIN" not in text:
                secrets[str(path)] = text.strip()
        elif name == ".cookie":
            text = _text(path)
            if text and ":" in text:
                secrets[str(path)] = text.strip().split(":", 1)[1]
        elif str(path).startswith("/etc/") and (
            name.endswith((".env", ".conf", ".toml", ".ini")) or name in ("config", "settings")
        ):
            for number, line in enumerate((_text(path) or "").splitlines(), 1):
                match = LINE.match(line)
                if not match or line.lstrip().startswith(("#", ";")):
                    continue
                key, value = match.group(1), match.group(2).strip("'\"")
                secret = SECRET_KEY.search(key.replace("-", "_")) and not NOT_SECRET.search(key)
                if secret and value:
                    secrets[f"{path}:{number} {key}"] = value
        elif name.endswith((".sqlite3", ".sqlite", ".db")) and "scnode" in str(path):
            secrets.update(_totp_seeds(path))
    return secrets


def _totp_seeds(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return found
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            columns = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
            for column in columns:
                if "totp" in column.lower() and ("secret" in column.lower() or "pending" in column):
                    for (value,) in db.execute(f'SELECT "{column}" FROM "{table}"'):  # noqa: S608
                        if isinstance(value, str) and value:
                            found[f"{path} {table}.{column}"] = value
    except sqlite3.Error:
        pass
    finally:
        db.close()
    return found


if __name__ == "__main__":
    print(json.dumps(collect()))
