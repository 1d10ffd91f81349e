"""Ports for stand-ins that tests start on loopback.

Asking the kernel for port 0 hands out a port from the ephemeral range — the same range every
outgoing connection takes its source port from. Between a test picking such a port and the
stand-in binding it (or while a crashed stand-in restarts on it), any client connection may take
it ("address already in use"). So ports come from below the ephemeral range instead, one block
per pytest-xdist worker, handed out in turn so a port is not reused soon after it was freed.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
from pathlib import Path

_BLOCK = 1500


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _worker_block() -> tuple[int, int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    number = int(worker[2:]) if worker[2:].isdigit() else 0
    top = min(_ephemeral_low(), 32768)
    blocks = max(1, (top - 15000) // _BLOCK)
    start = 15000 + (number % blocks) * _BLOCK
    return start, start + _BLOCK


_START, _END = _worker_block()
_NEXT = itertools.count(random.randrange(_END - _START))


def free_port() -> int:
    """A loopback TCP port nobody listens on now, outside the ephemeral range."""
    for _ in range(_END - _START):
        port = _START + next(_NEXT) % (_END - _START)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_START}-{_END}")
