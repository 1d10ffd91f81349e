"""Client key files written the ways the rotation (and an unlucky clock) can write them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_key_file(path: Path, key: str) -> None:
    """As the api_key module writes a client's key: key + newline, 0640, renamed over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(fd, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    Path(tmp).replace(path)


def rewrite_unseen(path: Path, key: str) -> None:
    """Rewrite the key file in place within one tick of the file clock: same inode, same size,
    same mtime — only a forced re-read (the client's answer to a 401) can see the new key."""
    before = path.stat()
    path.write_text(key + "\n", encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
