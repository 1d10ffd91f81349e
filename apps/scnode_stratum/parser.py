"""Parser of SRI ``translator_sv2`` log lines into stratum events, with worker attribution.

Generation: **translator_sv2 v1.5.0** (the real logs in ``shared/fixtures/translator/real-v1.5.0``
and the simnet emitter). Messages are matched by their text, not by the tracing target, so the
targets that sv2-apps moved (``translator_sv2::sv1::sv1_server`` without the doubled module,
``…::mining_message_handler``) parse too. The v1.3 "old architecture" connect and
``Handling mining.submit: Submit { user_name: … }`` lines are understood as well.

Line shape: ``<RFC3339 UTC, µs>Z <LEVEL right-aligned in 5> <target>: <message>``. Lines that
do not start a record continue the previous (multi-line debug) record; none of the lines this
parser needs spans several lines, so continuation lines are only counted.

What counts (see README.md):

- ``submit``: ``Received mining.submit from SV1 downstream for channel id: C`` — a share the
  miner sent (every one, at info).
- ``accept``: ``Received: SubmitSharesSuccess(channel_id=C, …, new_submits_accepted_count=K, …)``
  — the pool acknowledged shares. ``K`` is a running total per channel, so the event carries
  ``K - previous K`` shares (a smaller K means the channel was reset: K shares). Each counts
  with the channel's current upstream difficulty (``diff1 / target`` from
  ``OpenExtendedMiningChannelSuccess(… target: U256(hex) …)`` and ``SetTarget``).
- ``reject``: ``Invalid share for channel id: C`` (the proxy refused it) and
  ``Received: SubmitSharesError(…)`` (the pool refused it).

Worker attribution: the worker name appears only in the debug line ``Down: Handling
mining.authorize: Authorize { … name: "<worker>" … }``, which names no downstream. It is given
to the oldest downstream that connected and has not authorized yet (FIFO; a downstream that
disconnects first leaves the queue). Downstream → channel comes from ``Opening extended mining
channel for downstream N`` → ``OpenExtendedMiningChannel { request_id: R …`` →
``OpenExtendedMiningChannelSuccess(request_id: R, channel_id: C …)``. Shares on a channel whose
worker is unknown (an info-level log, aggregated channels) are kept under the worker
``channel:<user_identity>`` and belong to no member.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

DIFF1_TARGET = 0xFFFF << 208
UNATTRIBUTED_PREFIX = "channel:"

_LEVELS = {"INFO", "WARN", "DEBUG", "ERROR", "TRACE"}

_RE_SUBMIT = re.compile(r"for channel id: (\d+)")
_RE_SUCCESS = re.compile(
    r"SubmitSharesSuccess\(channel_id=(\d+), last_sequence_number=(\d+), "
    r"new_submits_accepted_count=(\d+), new_shares_sum=(\d+)\)"
)
_RE_ERROR = re.compile(
    r"SubmitSharesError\(channel_id=(\d+), sequence_number=(\d+), error_code=([^)\s]*)\)"
)
_RE_OPEN_SUCCESS = re.compile(
    r"OpenExtendedMiningChannelSuccess\(request_id: (\d+), channel_id: (\d+), "
    r"target: U256\(([0-9a-f]+)\)"
    r".*?\)\), user_identity: (\S+), nominal_hashrate: (\d+)"
)
_RE_OPEN_SEND = re.compile(r"request_id: (\d+)")
_RE_SET_TARGET = re.compile(r"SetTarget\(channel_id=(\d+), maximum_target=U256\(([0-9a-f]+)\)\)")
_RE_AUTHORIZE = re.compile(r'name: "((?:[^"\\]|\\.)*)"')
_RE_OLD_SUBMIT = re.compile(r'Submit \{ user_name: "((?:[^"\\]|\\.)*)"')
_RE_INT = re.compile(r"(\d+)")
_RE_VARDIFF = re.compile(r"for downstream (\d+): channel_id=(\d+), hashrate=([0-9.e+]+)")
_RE_JOB = re.compile(r"NewExtendedMiningJob\(channel_id: (\d+), job_id: (\d+)")
_RE_PREVHASH = re.compile(r"SetNewPrevHash\(channel_id=(\d+), job_id=(\d+)")
_RE_UPSTREAM_AT = re.compile(r"upstream at (\S+)")


def difficulty_of_target(target_hex: str) -> float:
    """Pool difficulty of a big-endian hex target (as SRI prints ``U256``)."""
    target = int(target_hex, 16)
    if target <= 0:
        return 0.0
    return DIFF1_TARGET / target


def member_of(worker: str | None, separator: str = ".") -> str | None:
    """Member key of a worker name: the part before the first separator (``alice.rig1`` →
    ``alice``; a name without separator is its own member). Unattributed channels have none."""
    if not worker or worker.startswith(UNATTRIBUTED_PREFIX):
        return None
    return worker.split(separator, 1)[0] or None


@dataclass(slots=True)
class Event:
    """One parsed fact, stored as a row of the ``events`` table."""

    ts: float
    kind: str
    worker: str | None = None
    channel: int | None = None
    submitted: int = 0
    accepted: int = 0
    rejected: int = 0
    diff_sum: float = 0.0
    level: str = "INFO"
    target: str = ""
    message: str = ""
    data: dict[str, Any] | None = None


@dataclass(slots=True)
class WorkerUpdate:
    """What a batch changed about a worker (merged into the ``workers`` table)."""

    last_seen: float
    connected: bool | None = None
    last_share: float | None = None
    channel: int | None = None
    difficulty: float | None = None
    peer: str | None = None


# Non-share events whose raw text is kept (the upstream-compatible events/errors endpoints).
KEEP_TEXT = {
    "connect",
    "authorize",
    "disconnect",
    "channel_open",
    "difficulty",
    "vardiff",
    "upstream_connect",
    "upstream_disconnect",
    "upstream_reconnect",
    "block_found",
    "translator_start",
    "log_error",
    "reject",
    "attribution_fix",
}


@dataclass
class Counters:
    lines: int = 0
    records: int = 0
    continuation: int = 0
    unknown: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class TranslatorLogParser:
    """Stateful parser: ``feed(lines)`` returns events; ``state()``/``load_state()`` persist the
    attribution state next to the file offset, so a restart continues exactly."""

    def __init__(self, member_separator: str = ".") -> None:
        self.separator = member_separator
        self.counters = Counters()
        self.worker_updates: dict[str, WorkerUpdate] = {}
        self._stamp_cache: dict[str, float] = {}
        self._reset()

    def _reset(self) -> None:
        # downstream id -> {"worker", "peer", "channel"}
        self.downstreams: dict[int, dict[str, Any]] = {}
        self.pending_auth: list[int] = []
        self.opening: int | None = None
        self.requests: dict[int, int] = {}
        # channel id -> {"ds", "worker", "identity", "diff", "acked"}
        self.channels: dict[int, dict[str, Any]] = {}
        self.last_connect: int | None = None
        self.pending_peer: str | None = None

    # -- persistence -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "v": 1,
            "downstreams": {str(k): v for k, v in self.downstreams.items()},
            "pending_auth": self.pending_auth,
            "opening": self.opening,
            "requests": {str(k): v for k, v in self.requests.items()},
            "channels": {str(k): v for k, v in self.channels.items()},
            "last_connect": self.last_connect,
            "pending_peer": self.pending_peer,
        }

    def load_state(self, data: dict[str, Any] | None) -> None:
        self._reset()
        if not data or data.get("v") != 1:
            return
        self.downstreams = {int(k): dict(v) for k, v in data["downstreams"].items()}
        self.pending_auth = [int(x) for x in data["pending_auth"]]
        self.opening = data["opening"]
        self.requests = {int(k): int(v) for k, v in data["requests"].items()}
        self.channels = {int(k): dict(v) for k, v in data["channels"].items()}
        self.last_connect = data.get("last_connect")
        self.pending_peer = data.get("pending_peer")

    def take_worker_updates(self) -> dict[str, WorkerUpdate]:
        updates, self.worker_updates = self.worker_updates, {}
        return updates

    # -- helpers -----------------------------------------------------------------------------
    def _stamp(self, text: str) -> float:
        second = text[:19]
        base = self._stamp_cache.get(second)
        if base is None:
            base = dt.datetime.fromisoformat(second).replace(tzinfo=dt.UTC).timestamp()
            if len(self._stamp_cache) > 4096:
                self._stamp_cache.clear()
            self._stamp_cache[second] = base
        return base + int(text[20:26]) / 1e6

    def _touch(self, worker: str, ts: float) -> WorkerUpdate:
        update = self.worker_updates.get(worker)
        if update is None:
            update = self.worker_updates[worker] = WorkerUpdate(last_seen=ts)
        else:
            update.last_seen = ts
        return update

    def _channel_worker(self, cid: int) -> str | None:
        channel = self.channels.get(cid)
        if channel is None:
            return None
        worker = channel.get("worker")
        if worker:
            return str(worker)
        return UNATTRIBUTED_PREFIX + str(channel.get("identity") or cid)

    def _count(self, kind: str) -> None:
        by_kind = self.counters.by_kind
        by_kind[kind] = by_kind.get(kind, 0) + 1

    # -- parsing -----------------------------------------------------------------------------
    def feed(self, lines: list[str]) -> list[Event]:
        """Parse complete lines (without their newline) into events."""
        events: list[Event] = []
        counters = self.counters
        for line in lines:
            counters.lines += 1
            if len(line) < 36 or line[26] != "Z" or line[4] != "-" or line[10] != "T":
                counters.continuation += 1
                continue
            level = line[28:33].lstrip()
            if level not in _LEVELS:
                counters.continuation += 1
                continue
            rest = line[34:]
            colon = rest.find(": ")
            if colon < 0:
                counters.continuation += 1
                continue
            counters.records += 1
            target = rest[:colon]
            message = rest[colon + 2 :]
            event = self._classify(line, level, target, message)
            if event is True:
                counters.by_kind["other"] = counters.by_kind.get("other", 0) + 1
                continue
            if event is None or event is False:
                if level in ("ERROR", "WARN"):
                    event = Event(
                        self._stamp(line), "log_error", level=level, target=target, message=message
                    )
                else:
                    counters.unknown += 1
                    continue
            self._count(event.kind)
            events.append(event)
        return events

    def _classify(self, line: str, level: str, target: str, msg: str) -> Event | bool | None:
        cid: int | None
        ds_id: int | None
        worker: str | None
        # The most frequent lines first.
        if msg.startswith("Received mining.submit from "):
            m = _RE_SUBMIT.search(msg)
            if m is None:
                return None
            cid = int(m[1])
            ts = self._stamp(line)
            worker = self._channel_worker(cid)
            if worker:
                self._touch(worker, ts)
            return Event(ts, "submit", worker, cid, submitted=1)
        if msg.startswith("Received: SubmitSharesSuccess("):
            m = _RE_SUCCESS.match(msg, 10)
            if m is None:
                return None
            cid, count = int(m[1]), int(m[3])
            ts = self._stamp(line)
            channel = self.channels.get(cid)
            if channel is None:
                # A channel opened before the log we read: count this acknowledgement only.
                channel = self.channels[cid] = {
                    "ds": None,
                    "worker": None,
                    "identity": str(cid),
                    "diff": 0.0,
                    "acked": count - 1,
                }
            previous = int(channel["acked"])
            new = count - previous if count > previous else count
            channel["acked"] = count
            worker = self._channel_worker(cid)
            if worker:
                self._touch(worker, ts).last_share = ts
            return Event(
                ts,
                "accept",
                worker,
                cid,
                accepted=new,
                diff_sum=new * float(channel["diff"]),
                data={"count": count, "new_shares_sum": int(m[4])},
            )
        if msg.startswith("SubmitSharesExtended: valid share"):
            return True
        if msg.startswith("Invalid share for channel id: "):
            m = _RE_INT.search(msg, 30)
            cid = int(m[1]) if m else None
            ts = self._stamp(line)
            worker = self._channel_worker(cid) if cid is not None else None
            return Event(
                ts,
                "reject",
                worker,
                cid,
                rejected=1,
                level=level,
                target=target,
                message=msg,
                data={"reason": "invalid-share", "by": "translator"},
            )
        if msg.startswith("Received: SubmitSharesError("):
            m = _RE_ERROR.search(msg)
            if m is None:
                return None
            cid = int(m[1])
            ts = self._stamp(line)
            worker = self._channel_worker(cid)
            return Event(
                ts,
                "reject",
                worker,
                cid,
                rejected=1,
                level=level,
                target=target,
                message=msg,
                data={"reason": m[3], "by": "pool"},
            )
        if msg.startswith("Received: NewExtendedMiningJob("):
            m = _RE_JOB.search(msg)
            return Event(
                self._stamp(line),
                "job",
                None,
                int(m[1]) if m else None,
                level=level,
                data={"job_id": int(m[2])} if m else None,
            )
        if msg.startswith("Received: SetNewPrevHash("):
            m = _RE_PREVHASH.search(msg)
            return Event(self._stamp(line), "prevhash", None, int(m[1]) if m else None, level=level)
        if msg.startswith("Received: SetTarget("):
            m = _RE_SET_TARGET.search(msg)
            if m is None:
                return None
            cid = int(m[1])
            diff = difficulty_of_target(m[2])
            ts = self._stamp(line)
            channel = self.channels.get(cid)
            if channel is not None:
                channel["diff"] = diff
            worker = self._channel_worker(cid)
            if worker:
                self._touch(worker, ts).difficulty = diff
            return Event(
                ts,
                "difficulty",
                worker,
                cid,
                level=level,
                target=target,
                message=msg,
                data={"difficulty": diff},
            )
        if msg.startswith("Down: Handling mining.authorize: "):
            m = _RE_AUTHORIZE.search(msg)
            if m is None:
                return None
            worker = m[1]
            ts = self._stamp(line)
            ds_id = self.pending_auth.pop(0) if self.pending_auth else self.last_connect
            cid = None
            update = self._touch(worker, ts)
            update.connected = True
            if ds_id is not None:
                ds = self.downstreams.setdefault(
                    ds_id, {"worker": None, "peer": None, "channel": None}
                )
                ds["worker"] = worker
                update.peer = ds.get("peer")
                cid = ds.get("channel")
                if cid is not None and cid in self.channels:
                    self.channels[cid]["worker"] = worker
                    update.channel = cid
                    update.difficulty = float(self.channels[cid]["diff"])
            return Event(
                ts,
                "authorize",
                worker,
                cid,
                level=level,
                target=target,
                message=msg,
                data={"downstream": ds_id},
            )
        if msg.startswith("New SV1 downstream connection from ") or msg.startswith(
            "PROXY SERVER - ACCEPTING FROM DOWNSTREAM: "
        ):
            peer = msg.rsplit(" ", 1)[-1]
            self.pending_peer = peer
            if msg.startswith("PROXY"):
                return Event(
                    self._stamp(line),
                    "connect",
                    level=level,
                    target=target,
                    message=msg,
                    data={"peer": peer},
                )
            return True  # the "registered" line that follows carries the downstream id
        if msg.startswith("Downstream ") and "registered successfully" in msg:
            m = _RE_INT.search(msg)
            if m is None:
                return None
            ds_id = int(m[1])
            peer_seen = self.pending_peer
            self.downstreams[ds_id] = {"worker": None, "peer": peer_seen, "channel": None}
            self.pending_auth.append(ds_id)
            self.last_connect = ds_id
            return Event(
                self._stamp(line),
                "connect",
                level=level,
                target=target,
                message=msg,
                data={"downstream": ds_id, "peer": peer_seen},
            )
        if msg.startswith("SV1 Server: Opening extended mining channel for downstream "):
            m = _RE_INT.search(msg, 58)
            self.opening = int(m[1]) if m else None
            return True
        if msg.startswith("Sending OpenExtendedMiningChannel message to upstream"):
            m = _RE_OPEN_SEND.search(msg)
            if m is not None and self.opening is not None:
                self.requests[int(m[1])] = self.opening
                self.opening = None
            return True
        if msg.startswith("Received: OpenExtendedMiningChannelSuccess("):
            m = _RE_OPEN_SUCCESS.search(msg)
            if m is None:
                return None
            req, cid, identity = int(m[1]), int(m[2]), m[4]
            diff = difficulty_of_target(m[3])
            ds_id = self.requests.pop(req, None)
            worker = None
            if ds_id is not None and ds_id in self.downstreams:
                self.downstreams[ds_id]["channel"] = cid
                worker = self.downstreams[ds_id].get("worker")
            self.channels[cid] = {
                "ds": ds_id,
                "worker": worker,
                "identity": identity,
                "diff": diff,
                "acked": 0,
            }
            ts = self._stamp(line)
            name = str(worker) if worker else None  # placeholders only once shares arrive
            if name:
                update = self._touch(name, ts)
                update.channel = cid
                update.difficulty = diff
                update.connected = True
            return Event(
                ts,
                "channel_open",
                name,
                cid,
                level=level,
                target=target,
                message=msg,
                data={
                    "identity": identity,
                    "difficulty": diff,
                    "downstream": ds_id,
                    "nominal_hashrate": int(m[5]),
                },
            )
        if "Downstream: " in msg and "disconnected and removed" in msg:
            m = _RE_INT.search(msg, msg.find("Downstream: "))
            ds_id = int(m[1]) if m else -1
            return self._disconnect(line, level, target, msg, ds_id)
        if msg.startswith("All downstreams removed from sv1 server") or (
            "All downstreams removed" in msg
        ):
            ts = self._stamp(line)
            for ds_id in list(self.downstreams):
                self._drop_downstream(ds_id, ts)
            self.channels.clear()
            self.requests.clear()
            return Event(
                ts, "disconnect", level=level, target=target, message=msg, data={"all": True}
            )
        if msg.startswith("Sending UpdateChannel for downstream "):
            m = _RE_VARDIFF.search(msg)
            if m is None:
                return None
            cid = int(m[2])
            worker = self._channel_worker(cid)
            return Event(
                self._stamp(line),
                "vardiff",
                worker,
                cid,
                level=level,
                target=target,
                message=msg,
                data={"hashrate": float(m[3]), "downstream": int(m[1])},
            )
        if msg.startswith("Connected to upstream at "):
            m = _RE_UPSTREAM_AT.search(msg)
            return Event(
                self._stamp(line),
                "upstream_connect",
                level=level,
                target=target,
                message=msg,
                data={"upstream": m[1] if m else None},
            )
        if msg.startswith("Upstream connection dropped"):
            return Event(
                self._stamp(line), "upstream_disconnect", level=level, target=target, message=msg
            )
        if msg.startswith("Upstream restarted successfully"):
            return Event(
                self._stamp(line), "upstream_reconnect", level=level, target=target, message=msg
            )
        if msg.startswith("Starting Translator Proxy"):
            ts = self._stamp(line)
            for ds_id in list(self.downstreams):
                self._drop_downstream(ds_id, ts)
            self._reset()
            return Event(ts, "translator_start", level=level, target=target, message=msg)
        if "Block Found" in msg or "block found" in msg.lower():
            return Event(self._stamp(line), "block_found", level=level, target=target, message=msg)
        if msg.startswith("Down: Handling mining.submit: Submit { user_name: "):
            # v1.3: the worker name is on every submit (debug)
            m = _RE_OLD_SUBMIT.search(msg)
            if m is None:
                return None
            ts = self._stamp(line)
            self._touch(m[1], ts)
            return Event(ts, "submit", m[1], None, submitted=1)
        return None

    def reattribute(self, cid: int, worker: str, ts: float) -> Event | None:
        """Give channel ``cid`` to ``worker`` (the translator's monitoring API knows better
        than the FIFO guess); returns the audit event, or None when nothing changed."""
        channel = self.channels.get(cid)
        if channel is None or not worker or channel.get("worker") == worker:
            return None
        before = channel.get("worker")
        channel["worker"] = worker
        ds_id = channel.get("ds")
        ds = self.downstreams.get(int(ds_id)) if ds_id is not None else None
        if ds is not None:
            ds["worker"] = worker
        update = self._touch(worker, ts)
        update.connected = True
        update.channel = cid
        update.difficulty = float(channel["diff"])
        self._count("attribution_fix")
        return Event(
            ts,
            "attribution_fix",
            worker,
            cid,
            level="WARN" if before else "INFO",
            message=f"channel {cid}: worker {before!r} -> {worker!r} (translator monitoring API)",
            data={"before": before, "after": worker},
        )

    def _drop_downstream(self, ds_id: int, ts: float) -> str | None:
        ds = self.downstreams.pop(ds_id, None)
        if ds_id in self.pending_auth:
            self.pending_auth.remove(ds_id)
        if ds is None:
            return None
        cid = ds.get("channel")
        worker = ds.get("worker")
        if cid is not None:
            worker = self._channel_worker(cid)
            self.channels.pop(cid, None)
        if worker:
            self._touch(worker, ts).connected = False
        return str(worker) if worker else None

    def _disconnect(self, line: str, level: str, target: str, msg: str, ds_id: int) -> Event:
        ts = self._stamp(line)
        cid = self.downstreams.get(ds_id, {}).get("channel")
        worker = self._drop_downstream(ds_id, ts)
        return Event(
            ts,
            "disconnect",
            worker,
            cid,
            level=level,
            target=target,
            message=msg,
            data={"downstream": ds_id},
        )
