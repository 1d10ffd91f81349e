"""The translator stand-in's log: the exact line format of SRI `translator_sv2` (tracing's
default formatter without colours), written to stdout and to an optional file that survives
log rotation.

Line shape: ``<RFC3339 UTC, µs>Z <LEVEL right-aligned in 5> <target>: <message>``. Messages may
span several lines, as the real debug output does (share validation, NextMiningNotify).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import threading
from pathlib import Path
from typing import TextIO

LEVELS = {"off": 0, "error": 1, "warn": 2, "info": 3, "debug": 4, "trace": 5}


def level_from_rust_log(value: str | None) -> int:
    """Read `RUST_LOG` as one level, like the real translator.

    A directive list (`translator_sv2=debug`) is not understood by the real binary either and
    falls back to info.
    """
    if not value:
        return LEVELS["info"]
    return LEVELS.get(value.strip().lower(), LEVELS["info"])


def format_line(level: str, target: str, message: str, when: dt.datetime | None = None) -> str:
    """One log record (without the trailing newline)."""
    moment = when or dt.datetime.now(dt.UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    return f"{stamp} {level.upper():>5} {target}: {message}"


class TranslatorLog:
    """Writes records to stdout and, when configured, to `log_file`.

    The file is opened with O_APPEND, so a `copytruncate` rotation needs nothing from us (the
    next write lands at the new end, no hole of NUL bytes). A moved or deleted file is noticed
    on the next write (the path no longer names our inode) and on SIGHUP, and reopened.
    """

    def __init__(self, level: int, log_file: str | None, stream: TextIO | None = None) -> None:
        self.level = level
        self.path = log_file
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()
        self._fd: int | None = None
        if self.path:
            self._open()

    def _open(self) -> None:
        assert self.path is not None
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def reopen(self) -> None:
        """Close and reopen the log file (SIGHUP, or the file was moved away)."""
        with self._lock:
            self._reopen_locked()

    def _reopen_locked(self) -> None:
        if self.path is None:
            return
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._open()

    def _file_moved(self) -> bool:
        assert self.path is not None and self._fd is not None
        try:
            on_disk = Path(self.path).stat()
        except FileNotFoundError:
            return True
        mine = os.fstat(self._fd)
        return (on_disk.st_ino, on_disk.st_dev) != (mine.st_ino, mine.st_dev)

    def enabled(self, level: str) -> bool:
        return LEVELS[level] <= self.level

    def emit(self, level: str, target: str, message: str) -> None:
        if not self.enabled(level):
            return
        line = format_line(level, target, message) + "\n"
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                pass
            if self.path is not None:
                if self._fd is None or self._file_moved():
                    self._reopen_locked()
                assert self._fd is not None
                os.write(self._fd, line.encode())

    def error(self, target: str, message: str) -> None:
        self.emit("error", target, message)

    def warn(self, target: str, message: str) -> None:
        self.emit("warn", target, message)

    def info(self, target: str, message: str) -> None:
        self.emit("info", target, message)

    def debug(self, target: str, message: str) -> None:
        self.emit("debug", target, message)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
