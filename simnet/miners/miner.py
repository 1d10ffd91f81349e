"""Simulated Stratum V1 miners: real clients that hash for real at the stand-in's tiny targets.

A miner's hashrate is given in simulated H/s; it hashes `hashrate / work_scale()` real hashes a
second (see `simnet.translator.work`). Many miners share one event loop; each reconnects when
its connection drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from simnet.translator import work

UNITS = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
BATCH = 64


def parse_hashrate(text: str) -> float:
    """`"1.5T"`, `"500G"`, `"2e12"` → simulated H/s."""
    match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([KMGTPE]?)(?:H/s|H)?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a hashrate: {text!r}")
    return float(match.group(1)) * UNITS[match.group(2).upper()]


@dataclass
class _Job:
    job_id: str
    prevhash_le: bytes
    coinb1: bytes
    coinb2: bytes
    branches: list[bytes]
    version: int
    nbits: int
    ntime: int


@dataclass
class MinerStats:
    connected: bool = False
    authorized: bool = False
    connects: int = 0
    hashes: int = 0
    submitted: int = 0
    accepted: int = 0
    rejected: int = 0
    difficulty: float = 0.0
    last_share_at: float | None = None


@dataclass
class SimMiner:
    """One SV1 miner (worker name like `alice.rig1`)."""

    host: str
    port: int
    worker: str
    hashrate: float
    password: str = "x"  # noqa: S105 - SV1 miners send a dummy password
    reconnect_delay: float = 0.5
    stats: MinerStats = field(default_factory=MinerStats)
    _task: asyncio.Task[None] | None = None
    _job: _Job | None = None
    _target: int = work.MAX_TARGET
    _extranonce1: bytes = b""
    _extranonce2_size: int = 4
    _extranonce2: int = 0
    _next_id: int = 3
    _writer: asyncio.StreamWriter | None = None
    _job_changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.stats.connected = False

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {
            "worker": self.worker,
            "hashrate": self.hashrate,
            "running": self.running,
            "connected": s.connected,
            "authorized": s.authorized,
            "connects": s.connects,
            "hashes": s.hashes,
            "submitted": s.submitted,
            "accepted": s.accepted,
            "rejected": s.rejected,
            "difficulty": s.difficulty,
            "last_share_at": s.last_share_at,
        }

    async def _run(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(self.reconnect_delay)
                continue
            self.stats.connects += 1
            self.stats.connected = True
            self._writer = writer
            self._job = None
            hasher = asyncio.create_task(self._hash_loop())
            try:
                await self._send(
                    {"id": 1, "method": "mining.subscribe", "params": ["simnet/1.0", "08000002"]}
                )
                await self._send(
                    {"id": 2, "method": "mining.authorize", "params": [self.worker, self.password]}
                )
                while True:
                    line = await reader.readline()
                    if not line:
                        break
                    self._on_message(json.loads(line))
            except (OSError, ValueError):
                pass
            finally:
                hasher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await hasher
                self.stats.connected = False
                self.stats.authorized = False
                self._writer = None
                writer.close()
            await asyncio.sleep(self.reconnect_delay)

    async def _send(self, message: dict[str, Any]) -> None:
        if self._writer is None:
            return
        self._writer.write((json.dumps(message) + "\n").encode())
        await self._writer.drain()

    def _on_message(self, msg: dict[str, Any]) -> None:
        method = msg.get("method")
        if method == "mining.set_difficulty":
            self.stats.difficulty = float(msg["params"][0])
            self._target = work.target_from_difficulty(self.stats.difficulty)
        elif method == "mining.notify":
            p = msg["params"]
            self._job = _Job(
                job_id=str(p[0]),
                prevhash_le=work.swap_words(bytes.fromhex(p[1])),
                coinb1=bytes.fromhex(p[2]),
                coinb2=bytes.fromhex(p[3]),
                branches=[bytes.fromhex(b) for b in p[4]],
                version=int(p[5], 16),
                nbits=int(p[6], 16),
                ntime=int(p[7], 16),
            )
            self._job_changed.set()
        elif msg.get("id") == 1 and isinstance(msg.get("result"), list):
            self._extranonce1 = bytes.fromhex(msg["result"][1])
            self._extranonce2_size = int(msg["result"][2])
        elif msg.get("id") == 2:
            self.stats.authorized = msg.get("result") is True
        elif isinstance(msg.get("id"), int) and msg["id"] >= 3:
            if msg.get("result") is True:
                self.stats.accepted += 1
            else:
                self.stats.rejected += 1

    async def _hash_loop(self) -> None:
        while True:
            job = self._job
            if job is None or not self._extranonce1:
                self._job_changed.clear()
                await self._job_changed.wait()
                continue
            self._job_changed.clear()
            self._extranonce2 = (self._extranonce2 + 1) % (1 << (8 * self._extranonce2_size))
            en2 = self._extranonce2.to_bytes(self._extranonce2_size, "big")
            coinbase = job.coinb1 + self._extranonce1 + en2 + job.coinb2
            root = work.merkle_root(coinbase, job.branches)
            ntime = max(job.ntime, int(time.time()))
            prefix = struct.pack("<I", job.version) + job.prevhash_le + root
            prefix += struct.pack("<II", ntime, job.nbits)
            nonce = 0
            while nonce < (1 << 32) and not self._job_changed.is_set():
                real_rate = max(self.hashrate / work.work_scale(), 1.0)
                started = time.monotonic()
                for n in range(nonce, nonce + BATCH):
                    value = work.hash_value(prefix + struct.pack("<I", n))
                    if value <= self._target:
                        await self._submit(job, en2, ntime, n)
                nonce += BATCH
                self.stats.hashes += BATCH
                spent = time.monotonic() - started
                await asyncio.sleep(max(0.0, BATCH / real_rate - spent))

    async def _submit(self, job: _Job, en2: bytes, ntime: int, nonce: int) -> None:
        self._next_id += 1
        self.stats.submitted += 1
        self.stats.last_share_at = time.time()
        await self._send(
            {
                "id": self._next_id,
                "method": "mining.submit",
                "params": [self.worker, job.job_id, en2.hex(), f"{ntime:08x}", f"{nonce:08x}"],
            }
        )


@dataclass
class MinerFleet:
    """Many miners against one SV1 endpoint, controllable at run time."""

    host: str
    port: int
    miners: dict[str, SimMiner] = field(default_factory=dict)

    def add(self, worker: str, hashrate: float, start: bool = True) -> SimMiner:
        miner = self.miners.get(worker)
        if miner is None:
            miner = SimMiner(self.host, self.port, worker, hashrate)
            self.miners[worker] = miner
        miner.hashrate = hashrate
        if start:
            miner.start()
        return miner

    async def stop_all(self) -> None:
        for miner in self.miners.values():
            await miner.stop()
