"""The API keys a server accepts, read from its keys file and re-read when the file changes,
so the rotation job (which replaces the file atomically) never needs a restart."""

from __future__ import annotations

import contextlib
from pathlib import Path

from scnode_core.apikeys import ApiKeyStore


class KeyRing:
    """Callable provider of the current `ApiKeyStore` (what `scnode_core.auth` expects)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._mtime = 0.0
        self._store = ApiKeyStore([])
        self.reload()

    def reload(self) -> None:
        """Read the file again if its modification time changed; a bad file raises."""
        mtime = self._path.stat().st_mtime
        if mtime != self._mtime:
            self._store = ApiKeyStore.load(self._path)
            self._mtime = mtime

    def __call__(self) -> ApiKeyStore:
        # A file missing for a moment (replaced by rename) keeps the keys last read.
        with contextlib.suppress(FileNotFoundError):
            self.reload()
        return self._store
