"""Follows the translator's log file across rotation and restarts, exactly once.

Position = (inode, byte offset) of the file being read, plus the last bytes before the offset.
It is committed in the same SQLite transaction as the rows parsed from the bytes before it
(``StratumStore.commit``), so after a crash (even SIGKILL) the tailer resumes at a line
boundary whose lines are all stored, none twice. A partial last line (no ``\\n`` yet) is not
consumed until it is complete.

Rotation:

- **rename** (logrotate ``create``, or the writer reopening on SIGHUP): the path names a new
  inode. The old file is read to its end first (through the open descriptor, or — after a
  restart — by finding the file with the saved inode next to the log, e.g. ``*.log.1``), then
  the new file from offset 0.
- **copytruncate** (upstream's 100 MB rotation): the file shrinks below the offset, or the bytes
  before the offset no longer match. The lines written after our offset but before the copy are
  read from the copy (a sibling ``<name>.*`` file whose bytes before the offset match), then the
  truncated file from 0. Lines the writer appends between logrotate's copy and its truncate are
  lost — inherent to copytruncate — and are counted as a gap when detectable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from scnode_stratum.parser import Event, TranslatorLogParser
from scnode_stratum.store import StratumStore

log = logging.getLogger(__name__)
TAIL_KEEP = 64


class LogTailer:
    def __init__(
        self,
        path: Path,
        store: StratumStore,
        parser: TranslatorLogParser,
        *,
        poll_interval: float = 0.1,
        chunk_bytes: int = 1 << 20,
        compact_interval: float = 60.0,
        raw_retention: float = 7200.0,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self.path = path
        self.store = store
        self.parser = parser
        self.poll_interval = poll_interval
        self.chunk_bytes = chunk_bytes
        self.compact_interval = compact_interval
        self.raw_retention = raw_retention
        self.on_commit = on_commit
        self.fd: int | None = None
        self.inode = 0
        self.offset = 0
        self.tail = b""
        self.lines_total = 0
        self.gaps = 0
        self.rotations = 0
        self.truncations = 0
        self.last_line_ts: float | None = None
        self.last_commit_at = 0.0
        self.running = False
        self._last_compact = time.monotonic()
        self._lock = threading.Lock()
        self._stop = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self) -> None:
        self.running = True
        try:
            while not self._stop.is_set():
                try:
                    progressed = await asyncio.to_thread(self.step)
                except Exception:
                    log.exception("tailer step failed; retrying from the stored position")
                    await asyncio.to_thread(self.reset_to_stored)
                    progressed = False
                if not progressed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self.poll_interval)
        finally:
            self.running = False
            self.close()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        with self._lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None

    def reset_to_stored(self) -> None:
        self.close()
        with self._lock:
            self.inode = 0
            self.offset = 0
            self.tail = b""

    def lag_bytes(self) -> int:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return 0
        if st.st_ino != self.inode:
            return st.st_size
        return max(0, st.st_size - self.offset)

    # -- one step (runs in a worker thread) -----------------------------------------------------
    def step(self) -> bool:
        """Read and store what is new; True when something was consumed."""
        with self._lock:
            if self.fd is None and not self._open_from_store():
                return False
            assert self.fd is not None
            progressed = self._read_available(self.fd, final=False)
            if not progressed:
                progressed = self._check_rotation()
            if time.monotonic() - self._last_compact > self.compact_interval:
                self._last_compact = time.monotonic()
                self.store.compact(raw_retention=self.raw_retention)
            return progressed

    def _open_from_store(self) -> bool:
        pos = self.store.position()
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        st = os.fstat(fd)
        self.parser.load_state(pos.parser_state if pos else None)
        if pos is None:
            self._adopt(fd, st.st_ino, 0, b"")
            return True
        self.lines_total = pos.lines
        self.last_line_ts = pos.last_line_ts
        if st.st_ino == pos.inode:
            self._adopt(fd, st.st_ino, pos.offset, pos.tail_bytes)
            if not self._same_spot(fd, pos.offset, pos.tail_bytes):
                self._truncated()
            return True
        old = self._find_inode(pos.inode)
        if old is not None:
            # Rotated by rename while we were down: finish the old file first.
            os.close(fd)
            self._adopt(os.open(old, os.O_RDONLY), pos.inode, pos.offset, pos.tail_bytes)
            return True
        # The file we were reading is gone (deleted or compressed): start the new one.
        log.warning("log file %s was rotated away while stopped; lines may be missing", self.path)
        self.gaps += 1
        self._adopt(fd, st.st_ino, 0, b"")
        self._commit([], 0)
        return True

    def _adopt(self, fd: int, inode: int, offset: int, tail: bytes) -> None:
        if self.fd is not None and self.fd != fd:
            os.close(self.fd)
        self.fd, self.inode, self.offset, self.tail = fd, inode, offset, tail

    def _siblings(self) -> list[Path]:
        name = self.path.name
        try:
            return sorted(
                (p for p in self.path.parent.iterdir() if p.name.startswith(name + ".")),
                key=lambda p: p.stat().st_mtime,
                reverse=True,
            )
        except FileNotFoundError:
            return []

    def _find_inode(self, inode: int) -> Path | None:
        for sibling in self._siblings():
            with contextlib.suppress(FileNotFoundError):
                if sibling.stat().st_ino == inode:
                    return sibling
        return None

    @staticmethod
    def _same_spot(fd: int, offset: int, tail: bytes) -> bool:
        if offset == 0:
            return True
        if os.fstat(fd).st_size < offset:
            return False
        if not tail:
            return True
        return os.pread(fd, len(tail), offset - len(tail)) == tail

    def _read_available(self, fd: int, *, final: bool) -> bool:
        """Consume complete lines from ``fd`` at the offset (``final``: the writer has moved
        on, so a last line without newline is complete too)."""
        progressed = False
        while True:
            if not final and not self._same_spot(fd, self.offset, self.tail):
                # copytruncate, possibly already written past our offset again
                self._truncated()
                progressed = True
                continue
            data = os.pread(fd, self.chunk_bytes, self.offset)
            if not data:
                return progressed
            end = data.rfind(b"\n")
            if end < 0:
                if not final:
                    return progressed
                consumed = data
            else:
                consumed = data[: end + 1]
            text = consumed.decode("utf-8", "replace")
            lines = text.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            self._consume(lines, len(consumed), consumed)
            progressed = True
            if len(data) < self.chunk_bytes and end == len(data) - 1:
                return progressed

    def _consume(self, lines: list[str], nbytes: int, raw: bytes) -> None:
        events = self.parser.feed(lines)
        self.offset += nbytes
        self.tail = (self.tail + raw[-TAIL_KEEP:])[-TAIL_KEEP:]
        self._commit(events, len(lines))
        self.lines_total += len(lines)
        if events:
            self.last_line_ts = events[-1].ts

    def _commit(self, events: list[Event], nlines: int) -> None:
        last_id = self.store.commit(
            events,
            self.parser.take_worker_updates(),
            self.inode,
            self.offset,
            self.tail,
            self.parser.state(),
            nlines,
        )
        self.last_commit_at = time.time()
        if self.on_commit is not None:
            self.on_commit(last_id)

    def apply_attribution(self, workers_by_channel: dict[int, str]) -> int:
        """Correct channel → worker from the translator's monitoring API; only while caught up
        with the log (channel ids restart with the translator, so a lagging reader could hold
        an older channel of the same id). Returns how many channels changed."""
        with self._lock:
            if self.fd is None or self.lag_bytes() != 0:
                return 0
            now = time.time()
            events = [
                event
                for cid, worker in sorted(workers_by_channel.items())
                if (event := self.parser.reattribute(cid, worker, now)) is not None
            ]
            if events:
                self._commit(events, 0)
            return len(events)

    def _check_rotation(self) -> bool:
        assert self.fd is not None
        try:
            st_path = self.path.stat()
        except FileNotFoundError:
            st_path = None
        if not self._same_spot(self.fd, self.offset, self.tail):
            self._truncated()
            return True
        if st_path is not None and st_path.st_ino != self.inode:
            # Renamed away: drain the old file (a last line without newline is complete now).
            self._read_available(self.fd, final=True)
            self.rotations += 1
            new_fd = os.open(self.path, os.O_RDONLY)
            self._adopt(new_fd, os.fstat(new_fd).st_ino, 0, b"")
            self._commit([], 0)
            return True
        return False

    def _truncated(self) -> None:
        """copytruncate: read the rest of our spot from the copy, then the file from 0."""
        assert self.fd is not None
        self.truncations += 1
        copy = None
        for sibling in self._siblings():
            try:
                fd = os.open(sibling, os.O_RDONLY)
            except FileNotFoundError:
                continue
            if os.fstat(fd).st_ino != self.inode and self._same_spot(fd, self.offset, self.tail):
                copy = fd
                break
            os.close(fd)
        if copy is not None:
            try:
                self._read_available(copy, final=True)
            finally:
                os.close(copy)
        else:
            log.warning(
                "%s was truncated and no copy holds our position; lines may be lost", self.path
            )
            self.gaps += 1
        self.offset = 0
        self.tail = b""
        self._commit([], 0)
