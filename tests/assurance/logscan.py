"""Search logs (files, or text such as Ansible output and journals) for secrets.

A secret is found as it is, and in the shapes a log would carry it: URL-encoded, base64 of
``user:password`` (an HTTP Basic header), and JSON-escaped. Findings name the file and line and
show only the secret's first characters.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

MIN_LENGTH = 8  # shorter values (a member id, "true") would match everywhere


def shapes(secret: str) -> set[str]:
    """The secret and its encoded forms a log line might hold."""
    found = {secret, urllib.parse.quote(secret, safe=""), json.dumps(secret)[1:-1]}
    return {s for s in found if len(s) >= MIN_LENGTH}


def scan_text(name: str, text: str, secrets: Iterable[str]) -> list[str]:
    """``name:line: secret abc…`` for each line of ``text`` holding a secret."""
    wanted = [(s, shape) for s in secrets if len(s) >= MIN_LENGTH for shape in shapes(s)]
    findings: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        for secret, shape in wanted:
            if shape in line:
                findings.append(f"{name}:{number}: secret {secret[:6]}… ({len(secret)} chars)")
    return findings


def basic_auth_shapes(user: str, password: str) -> set[str]:
    """The Authorization header value a client sends for ``user:password``."""
    return {base64.b64encode(f"{user}:{password}".encode()).decode()}


def scan_logs(paths: Iterable[Path], secrets: Iterable[str]) -> list[str]:
    """Findings over every file in ``paths``."""
    wanted = sorted(set(secrets))
    findings: list[str] = []
    for path in paths:
        findings += scan_text(str(path), path.read_text(errors="replace"), wanted)
    return findings
