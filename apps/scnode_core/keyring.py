"""The API keys a server accepts, read from its keys file and re-read when the file changes,
so the rotation job (which replaces the file atomically) never needs a restart."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from scnode_core.apikeys import ApiKeyError, ApiKeyStore

log = logging.getLogger(__name__)


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    # inode + nanosecond mtime + size: an atomic replace (new inode) or a second write within
    # one tick of the file system's clock (same mtime, other size) is still seen as a change.
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class KeyRing:
    """Callable provider of the current `ApiKeyStore` (what `scnode_core.auth` expects).

    `required=True`: the file must exist and be valid at start (the app refuses to start
    otherwise). Later, a file missing for a moment or a broken file keeps the keys last read
    and logs why — a bad rotation never locks every client out.
    """

    def __init__(self, path: Path, *, required: bool = True) -> None:
        self._path = path
        self._seen: tuple[int, int, int, int] | None = None
        self._store = ApiKeyStore([])
        if required:
            self._load(self._path.stat())

    def _load(self, st: os.stat_result) -> None:
        store = ApiKeyStore.load(self._path)
        self._store, self._seen = store, _identity(st)

    def reload(self) -> None:
        """Read the file again if it changed; a broken file keeps the last good keys."""
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return
        if _identity(st) == self._seen:
            return
        try:
            self._load(st)
        except (ApiKeyError, OSError, ValueError) as exc:
            self._seen = _identity(st)  # say it once per bad version, not per request
            log.error(
                "API keys file %s not reloaded, keeping the keys last read: %s", self._path, exc
            )

    def __call__(self) -> ApiKeyStore:
        with contextlib.suppress(FileNotFoundError):
            self.reload()
        return self._store
