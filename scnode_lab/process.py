"""Running commands and tracking the lab's long-lived processes by recorded PID."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Children started by this process, kept so they are reaped (not left as zombies) and so
# subprocess does not warn about them being garbage-collected while running.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class LabError(RuntimeError):
    """A lab operation failed; the message says what and why."""


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input_text: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output; raise LabError with its stderr when it fails."""
    proc = subprocess.run(
        list(argv),
        input=input_text,
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise LabError(
            f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout}"
        )
    return proc


def netns_exec(netns: str, argv: Sequence[str]) -> list[str]:
    """`argv` run inside the named network namespace."""
    return ["ip", "netns", "exec", netns, *argv]


@dataclass(frozen=True)
class TrackedProcess:
    """A PID plus its start time, so a recycled PID is never mistaken for ours."""

    pid: int
    start_ticks: int

    @classmethod
    def of(cls, pid: int) -> TrackedProcess:
        ticks = start_ticks(pid)
        if ticks is None:
            raise LabError(f"process {pid} exited right after it was started")
        return cls(pid=pid, start_ticks=ticks)

    def alive(self) -> bool:
        return start_ticks(self.pid) == self.start_ticks

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start_ticks": self.start_ticks}

    @classmethod
    def from_json(cls, data: Mapping[str, int]) -> TrackedProcess:
        return cls(pid=int(data["pid"]), start_ticks=int(data["start_ticks"]))

    def stop(self, timeout: float) -> bool:
        """SIGTERM, wait up to `timeout`, then SIGKILL. True if it ended before the SIGKILL."""
        if not self._signal(signal.SIGTERM):
            return True
        if self.wait_gone(timeout):
            return True
        self._signal(signal.SIGKILL)
        self.wait_gone(5)
        return False

    def wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._reap()
            if not self.alive():
                return True
            time.sleep(0.05)
        return not self.alive()

    def _signal(self, sig: signal.Signals) -> bool:
        if not self.alive():
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def _reap(self) -> None:
        # When the lab was started by this very process (tests), the child must be reaped or
        # it lingers as a zombie that still looks alive.
        child = _CHILDREN.get(self.pid)
        if child is not None and child.poll() is not None:
            del _CHILDREN[self.pid]


def start_ticks(pid: int) -> int | None:
    """The process' start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces; the fields after its ')' are plain.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def spawn_detached(
    argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None
) -> TrackedProcess:
    """Start a long-lived process in its own session, output to `log`, and track it."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=None if env is None else dict(env),
        )
    _CHILDREN[proc.pid] = proc
    return TrackedProcess.of(proc.pid)
