"""The API key a client presents, fixed or followed in its key file.

The rotation job (the ``api_key`` module) replaces a client's key file (temp file + rename,
content = key and a newline) and keeps the old key valid for a grace period. A client that
takes its key from a `KeySource` on every request sends the new key from the moment the file
changes, so no restart is needed: `current` re-reads the file when its inode, nanosecond mtime
or size changed; `refresh` re-reads it unconditionally (what a client does on a 401, in case a
rewrite fell within one tick of the file system's clock and left the stat unchanged).

A file that is missing, unreadable or empty for a moment keeps the key last read (a warning is
logged once per bad spell, never the key).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class KeyFileError(ValueError):
    """The key file cannot give a first key (missing, unreadable or empty); no secret inside."""


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class KeySource:
    """A client's API key: `fixed` or `from_file`. ``repr`` never shows the key."""

    def __init__(self, key: str, path: Path | None = None) -> None:
        if not key:
            raise KeyFileError("an API key must not be empty")
        self._key = key
        self._path = path
        self._seen: tuple[int, int, int, int] | None = None
        self._warned = False
        self._lock = threading.Lock()

    @classmethod
    def fixed(cls, key: str) -> KeySource:
        """A key that never changes (given in the settings, or by a test)."""
        return cls(key)

    @classmethod
    def from_file(cls, path: Path, initial: str | None = None) -> KeySource:
        """The key in ``path``, followed from now on. Without ``initial`` the file is read now
        and must hold a key (KeyFileError otherwise); with it (the key the settings already
        read from the file) the file is read on first use, keeping ``initial`` if it cannot."""
        if initial:
            return cls(initial, path)
        try:
            st = path.stat()
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise KeyFileError(f"API key file {path}: {exc.strerror}") from None
        if not key:
            raise KeyFileError(f"API key file {path} is empty")
        source = cls(key, path)
        source._seen = _identity(st)
        return source

    @property
    def path(self) -> Path | None:
        """The key file followed, None for a fixed key."""
        return self._path

    def __repr__(self) -> str:
        where = "fixed" if self._path is None else str(self._path)
        return f"KeySource({where})"

    def current(self) -> str:
        """The key to send now: the file's, re-read if its stat changed since the last read."""
        return self._follow(force=False)

    def refresh(self) -> str:
        """Re-read the file whatever its stat says; the key to send now."""
        return self._follow(force=True)

    def _follow(self, *, force: bool) -> str:
        if self._path is None:
            return self._key
        with self._lock:
            try:
                st = self._path.stat()
            except OSError as exc:
                self._failed(exc.strerror or type(exc).__name__)
                return self._key
            if force or _identity(st) != self._seen:
                self._read(st)
            return self._key

    def _read(self, st: os.stat_result) -> None:
        assert self._path is not None
        try:
            key = self._path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            self._failed(getattr(exc, "strerror", None) or type(exc).__name__)
            return
        if not key:
            # not remembered as seen: the file is read again on the next call, until it
            # holds a key (an in-place rewrite may be caught between truncate and write)
            self._failed("empty")
            return
        if key != self._key:
            log.info("API key file %s: using its new key", self._path)
        self._key, self._seen, self._warned = key, _identity(st), False

    def _failed(self, reason: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("API key file %s: %s; keeping the key last read", self._path, reason)


def key_source(api_key: str | KeySource) -> KeySource:
    """``api_key`` as a KeySource (a plain string is a fixed key)."""
    return api_key if isinstance(api_key, KeySource) else KeySource.fixed(api_key)
