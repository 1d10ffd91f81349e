"""The translator stand-in: a real Stratum V1 server in front of a simulated SV2 upstream.

What is real: the SV1 protocol (JSON lines over TCP), share validation (SHA256d of the header
built from the job, extranonce1/2, ntime and nonce, compared with the miner's target), vardiff,
one upstream channel per miner (`<user_identity>.minerN`), and the log lines, which are the
exact messages and targets of SRI `translator_sv2` v1.5.0 (`fixtures/translator/real-v1.5.0`).

What is simulated: the SV2 upstream (pool) lives in this process; there is no Noise handshake
and no SV2 framing on the wire. It answers like the SRI pool does: channel success with a
channel target, new jobs, `SetTarget` after `UpdateChannel`, `SubmitSharesSuccess` with a
running accepted count, `SubmitSharesError` for duplicate shares.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from simnet.translator import work
from simnet.translator.config import TranslatorConfig
from simnet.translator.logfmt import TranslatorLog

T_ROOT = "translator_sv2"
T_UP = "translator_sv2::sv2::upstream::upstream"
T_UP_MH = "translator_sv2::sv2::upstream::message_handler"
T_CM = "translator_sv2::sv2::channel_manager::channel_manager"
T_CM_MH = "translator_sv2::sv2::channel_manager::message_handler"
T_SRV = "translator_sv2::sv1::sv1_server::sv1_server"
T_DIFF = "translator_sv2::sv1::sv1_server::difficulty_manager"
T_DS = "translator_sv2::sv1::downstream::downstream"
T_DS_MH = "translator_sv2::sv1::downstream::message_handler"
T_DS_DATA = "translator_sv2::sv1::downstream::data"
T_UTILS = "translator_sv2::utils"
T_STATUS = "translator_sv2::status"
T_CHAN = "channels_sv2::client::extended"
T_TRANSL = "stratum_translation::sv2_to_sv1"
T_VARDIFF = "vardiff"
T_NOISE = "network_helpers_sv2::noise_stream"
T_SV1API = "sv1_api"
T_SV1CONN = "network_helpers_sv2::sv1_connection"

NOTIFY_SUBSCRIPTION = "ae6812eb4cd7735a302a8a9dd95cf71f"
VERSION = 0x20000000
NBITS = 0x1D00FFFF
POOL_TAG = b"/SC Cluster simnet//"
UPSTREAM_EXTRANONCE_SIZE = 24
AGGREGATED_SEARCH_SPACE_BYTES = 4  # v1.5.0 AGGREGATED_MODE_TRANSLATOR_SEARCH_SPACE_BYTES
MAX_JOBS_KEPT = 8


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, str(default)))


@dataclass
class Job:
    job_id: int
    prevhash_le: bytes
    coinb1: bytes
    coinb2: bytes
    version: int
    nbits: int
    ntime: int


@dataclass
class Channel:
    """One upstream extended channel and its share accounting (what monitoring reports)."""

    channel_id: int
    user_identity: str
    nominal_hashrate: float
    target: int
    extranonce_prefix: bytes
    downstream_id: int
    sequence_number: int = 0
    shares_submitted: int = 0
    shares_acknowledged: int = 0
    shares_rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    acknowledged_work_sum: int = 0
    validated_work_sum: float = 0.0
    best_diff: float = 0.0
    seen: set[tuple[int, bytes, int, int]] = field(default_factory=set)  # forwarded shares


@dataclass
class Downstream:
    downstream_id: int
    peer: str
    writer: asyncio.StreamWriter
    target: int
    hashrate: float
    channel: Channel | None = None
    local_channel_id: int = 0  # the channel id SV1-side logs use (= upstream id unless aggregated)
    extranonce1: bytes = b""
    worker_name: str = ""
    user_name: str = ""
    queued: list[dict[str, Any]] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    pending_target: int | None = None
    pending_hashrate: float | None = None
    next_target: int | None = None
    set_difficulty_cached: bool = False
    reset_by_upstream: bool = False
    shares_since_update: int = 0
    last_update: float = field(default_factory=time.monotonic)
    handshake_done: bool = False


def _response_debug(msg_id: Any, result: str) -> str:
    return f"Response {{ id: {msg_id}, error: None, result: {result} }}"


def _sending(msg_id: Any, result: str) -> str:
    return f"Down: Sending Sv1 message to downstream: {_response_debug(msg_id, result)}"


def _rust_str(value: Any) -> str:
    return json.dumps(str(value), ensure_ascii=False)


class Translator:
    """The SV1 server, channel manager and simulated upstream of one translator process."""

    def __init__(self, config: TranslatorConfig, log: TranslatorLog) -> None:
        self.config = config
        self.log = log
        self.downstreams: dict[int, Downstream] = {}
        self.channels: dict[int, Channel] = {}
        self._next_downstream = 0
        self._miner_counter = 0
        self._next_channel = 0
        self._next_local_channel = 0
        self.aggregated: Channel | None = None
        self._request_id = 0
        self.height = 900_000
        self.prev_block = 0
        self.job_counter = 0
        self.current_job_id = 0
        self.upstream_difficulty_factor = _env_float("SIMNET_UPSTREAM_DIFFICULTY_FACTOR", 2.0)
        self.job_interval = _env_float("SIMNET_JOB_INTERVAL_SECS", 30.0)
        self.vardiff_interval = _env_float("SIMNET_VARDIFF_INTERVAL_SECS", 60.0)
        self.payout_script = bytes.fromhex("0014") + bytes(20)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.bound_port: int = config.downstream_port

    # ---- start-up -------------------------------------------------------------------------
    def _connect_upstream(self, first: bool) -> None:
        up = self.config.upstreams[0]
        addr = f"{up.address}:{up.port}"
        log = self.log
        log.info(T_UP, f"Trying to connect to upstream 0 at {addr}")
        log.info(T_UP, f"Connected to upstream at {addr} (attempt 1/3)")
        log.debug(T_NOISE, "First handshake message sent")
        log.debug(T_NOISE, "Waiting for more bytes during handshake")
        log.debug(T_NOISE, "Second handshake message received")
        log.debug(T_UP, f"Successfully initialized upstream channel with {addr}")
        if first:
            log.debug(T_ROOT, "Upstream initialized successfully.")
        log.debug(T_UP, "Upstream: initiating SV2 handshake...")
        log.debug(T_UP, "Received handshake response from upstream.")
        log.info(T_UP_MH, "Received: SetupConnectionSuccess(used_version: 2, flags: 4)")
        log.debug(T_UP, "Upstream: handshake completed successfully.")

    async def start(self) -> None:
        log = self.log
        log.info(T_ROOT, "Starting Translator Proxy...")
        log.debug(T_ROOT, "Channels initialized.")
        self._connect_upstream(first=True)
        listen = f"{self.config.downstream_address}:{self.config.downstream_port}"
        log.info(T_SRV, f"Starting SV1 server on {listen}")
        if self.config.enable_vardiff:
            log.info(T_SRV, "Variable difficulty adjustment enabled - starting vardiff loop")
        else:
            log.info(
                T_SRV,
                "Variable difficulty adjustment disabled - upstream will manage difficulty, "
                "SV1 server will forward SetTarget messages to downstreams",
            )
        self._server = await asyncio.start_server(
            self._handle_connection,
            self.config.downstream_address,
            self.config.downstream_port,
            reuse_address=True,
        )
        sock = self._server.sockets[0]
        self.bound_port = int(sock.getsockname()[1])
        log.info(T_SRV, f"Translator Proxy: listening on {listen}")
        self._new_block()
        self._tasks.append(asyncio.create_task(self._job_loop()))
        if self.config.enable_vardiff:
            self._tasks.append(asyncio.create_task(self._vardiff_loop()))

    def drop_upstream(self) -> None:
        """Simulate the pool closing the SV2 connection: the proxy reconnects, resets its
        channels and drops every miner (they reconnect), as translator_sv2 v1.5.0 does."""
        log = self.log
        reason = "ChannelErrorReceiver(RecvError)"
        log.error(
            T_UP,
            "Upstream: receiver channel closed unexpectedly: receiving from an empty and "
            "closed channel",
        )
        log.warn(T_STATUS, f"Upstream shutting down due to error: {reason}")
        log.warn(T_UP, "Upstream: task shutting down cleanly.")
        log.warn(T_ROOT, f"Upstream connection dropped: {reason} — attempting reconnection...")
        self._connect_upstream(first=False)
        log.info(T_ROOT, "Upstream restarted successfully.")
        log.info(T_CM, "ChannelManager: upstream reconnected, resetting channel state.")
        self.channels.clear()
        self._next_channel = 0
        self._next_local_channel = 0
        self.aggregated = None
        log.info(T_SRV, "🔌 All downstreams removed from sv1 server as upstream reconnected")
        for ds in list(self.downstreams.values()):
            ds.reset_by_upstream = True
            log.info(T_DS, "All downstream shutdown message received (upstream reconnected)")
            log.warn(T_DS, f"Downstream {ds.downstream_id}: unified task shutting down")
            self.downstreams.pop(ds.downstream_id, None)
            ds.writer.close()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for ds in list(self.downstreams.values()):
            ds.writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # ---- simulated upstream: jobs -----------------------------------------------------------
    def _new_block(self) -> None:
        # shares of the previous block are stale downstream; duplicates need no memory of them
        for channel in self.channels.values():
            channel.seen.clear()
        self.height += 1
        self.prev_block += 1
        self.job_counter += 1
        self.current_job_id = self.job_counter

    def _coinbase_parts(self) -> tuple[bytes, bytes]:
        height = self.height.to_bytes(3, "little")
        script_head = b"\x03" + height + bytes([len(POOL_TAG)]) + POOL_TAG + b"\x20"
        script_len = len(script_head) + 32
        prefix = (
            struct.pack("<I", 2)
            + b"\x01"
            + bytes(32)
            + b"\xff\xff\xff\xff"
            + bytes([script_len])
            + script_head
        )
        suffix = (
            b"\xff\xff\xff\xff\x01"
            + struct.pack("<q", 312_500_000)
            + bytes([len(self.payout_script)])
            + self.payout_script
            + bytes(4)
        )
        return prefix, suffix

    def _job_for(self, channel: Channel) -> Job:
        prefix, suffix = self._coinbase_parts()
        prevhash = self.prev_block.to_bytes(32, "little")
        # The SV1 coinbase1 ends with the upstream extranonce prefix; extranonce1 carries the rest.
        return Job(
            job_id=self.current_job_id,
            prevhash_le=prevhash,
            coinb1=prefix + channel.extranonce_prefix,
            coinb2=suffix,
            version=VERSION,
            nbits=NBITS,
            ntime=int(time.time()),
        )

    def _log_job_received(self, channel: Channel, job: Job) -> None:
        prefix, suffix = self._coinbase_parts()
        self.log.debug(T_UP, "Upstream: received frame.")
        self.log.info(
            T_CM_MH,
            f"Received: NewExtendedMiningJob(channel_id: {channel.channel_id}, job_id: "
            f"{job.job_id}, min_ntime: Sv2Option(None), version: {job.version}, "
            f"version_rolling_allowed: true, merkle_path: Seq0255<len=0: [], "
            f"coinbase_tx_prefix: B064K({prefix.hex()}), "
            f"coinbase_tx_suffix: B064K({suffix.hex()}))",
        )

    def _log_prevhash_received(self, channel: Channel, job: Job) -> None:
        self.log.debug(T_UP, "Upstream: received frame.")
        self.log.info(
            T_CM_MH,
            f"Received: SetNewPrevHash(channel_id={channel.channel_id}, job_id={job.job_id}, "
            f"prev_hash={work.u256_display(self.prev_block)}, min_ntime={job.ntime}, "
            f"nbits={job.nbits})",
        )

    async def _job_loop(self) -> None:
        while True:
            await asyncio.sleep(self.job_interval)
            self._new_block()
            active = [ds for ds in self.downstreams.values() if ds.channel is not None]
            jobs: dict[int, Job] = {}
            upstream = {ds.channel.channel_id: ds.channel for ds in active if ds.channel}
            for cid, channel in reversed(upstream.items()):
                jobs[cid] = self._job_for(channel)
                self._log_job_received(channel, jobs[cid])
            for cid, channel in reversed(upstream.items()):
                self._log_prevhash_received(channel, jobs[cid])
            for ds in reversed(active):
                assert ds.channel is not None
                await self._send_job(ds, jobs[ds.channel.channel_id], clean=True)

    async def _send_job(self, ds: Downstream, job: Job, clean: bool) -> None:
        cid = ds.local_channel_id
        self.log.debug(T_SRV, f"Received SetNewPrevHash for channel id: {cid}")
        self.log.debug(T_SRV, f"Received NewExtendedMiningJob for channel id: {cid}")
        if clean:
            ds.jobs.clear()
        ds.jobs[str(job.job_id)] = job
        while len(ds.jobs) > MAX_JOBS_KEPT:
            ds.jobs.pop(next(iter(ds.jobs)))
        prev_sv1 = work.swap_words(job.prevhash_le)
        self.log.debug(
            T_TRANSL,
            f'\nNextMiningNotify: Notify {{ job_id: "{job.job_id}", prev_hash: PrevHash(Owned(['
            f"{work.bytes_list(prev_sv1)}])), "
            f"coin_base1: HexBytes([{work.bytes_list(job.coinb1)}]),"
            f" coin_base2: HexBytes([{work.bytes_list(job.coinb2)}]), merkle_branch: [], "
            f"version: HexU32Be({job.version}), bits: HexU32Be({job.nbits}), "
            f"time: HexU32Be({job.ntime}), clean_jobs: {'true' if clean else 'false'} }}\n",
        )
        if ds.set_difficulty_cached:
            self.log.debug(T_DS, "Down: Sending pending mining.set_difficulty before mining.notify")
            ds.set_difficulty_cached = False
            # Validation follows the difficulty the miner has been told about.
            if ds.next_target is not None:
                ds.target, ds.next_target = ds.next_target, None
            await self._write(ds, self._set_difficulty_msg(ds))
        notify = {
            "id": None,
            "method": "mining.notify",
            "params": [
                str(job.job_id),
                prev_sv1.hex(),
                job.coinb1.hex(),
                job.coinb2.hex(),
                [],
                f"{job.version:08x}",
                f"{job.nbits:08x}",
                f"{job.ntime:08x}",
                clean,
            ],
        }
        await self._write(ds, notify)

    def _set_difficulty_msg(self, ds: Downstream) -> dict[str, Any]:
        difficulty = work.difficulty_from_target(ds.target)
        return {"id": None, "method": "mining.set_difficulty", "params": [difficulty]}

    # ---- SV1 connections -------------------------------------------------------------------
    async def _write(self, ds: Downstream, message: dict[str, Any]) -> None:
        try:
            ds.writer.write((json.dumps(message) + "\n").encode())
            await ds.writer.drain()
        except (ConnectionError, RuntimeError):
            pass

    def _initial_target(self) -> tuple[int, float]:
        hashrate = self.config.min_individual_miner_hashrate
        spm = self.config.shares_per_minute
        return work.target_from_difficulty(work.real_difficulty_for(hashrate, spm)), hashrate

    async def _handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer_info = writer.get_extra_info("peername")
        peer = f"{peer_info[0]}:{peer_info[1]}" if peer_info else "unknown"
        self.log.info(T_SRV, f"New SV1 downstream connection from {peer}")
        self._next_downstream += 1
        target, hashrate = self._initial_target()
        ds = Downstream(self._next_downstream, peer, writer, target, hashrate)
        self.downstreams[ds.downstream_id] = ds
        self.log.info(
            T_SRV,
            f"Downstream {ds.downstream_id} registered successfully "
            "(channel will be opened after first message)",
        )
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ConnectionError, asyncio.LimitOverrunError, ValueError):
                    break
                if not line:
                    break
                text = line.decode(errors="replace").strip()
                if not text:
                    continue
                try:
                    message = json.loads(text)
                    if not isinstance(message, dict):
                        raise ValueError("not an object")
                except ValueError as exc:
                    self.log.error(T_SV1CONN, f"Failed to deserialize message: Error({exc!s})")
                    continue
                await self._on_message(ds, message)
        finally:
            self._on_disconnect(ds)
            writer.close()

    def _on_disconnect(self, ds: Downstream) -> None:
        if ds.reset_by_upstream:
            return
        i = ds.downstream_id
        log = self.log
        reason = "ChannelErrorReceiver(RecvError)"
        log.error(T_DS, "Error receiving downstream message: RecvError")
        log.error(T_DS, f"Downstream {i}: error in downstream message handler: {reason}")
        log.warn(T_STATUS, f"Downstream [{i}] shutting down due to error: {reason}")
        log.debug(
            T_STATUS,
            f"Sending status from Downstream [{i}]: DownstreamShutdown {{ downstream_id: {i}, "
            f"reason: {reason} }}",
        )
        log.warn(T_DS, f"Downstream {i}: unified task shutting down")
        log.warn(T_ROOT, f"Downstream {i} disconnected — notifying SV1 server.")
        self.downstreams.pop(i, None)
        log.info(T_SRV, f"🔌 Downstream: {i} disconnected and removed from sv1 server downstreams")
        if ds.channel is not None and not self.config.aggregate_channels:
            cid = ds.local_channel_id
            log.info(T_SRV, f"Sending CloseChannel message: {cid} for downstream: {i}")
            self.channels.pop(cid, None)

    async def _on_message(self, ds: Downstream, message: dict[str, Any]) -> None:
        if ds.channel is None:
            if not ds.queued:
                self.log.debug(
                    T_DS, f"Down: Sent OpenChannel request for downstream {ds.downstream_id}"
                )
                self.log.debug(T_DS, "Down: Queuing Sv1 message until channel is established")
                ds.queued.append(message)
                await self._open_channel(ds)
                return
            ds.queued.append(message)
            return
        await self._handle_sv1(ds, message)

    async def _open_channel(self, ds: Downstream) -> None:
        log = self.log
        log.info(
            T_SRV,
            f"SV1 Server: Opening extended mining channel for downstream {ds.downstream_id} "
            "after receiving first message",
        )
        self._miner_counter += 1
        identity = f"{self.config.user_identity}.miner{self._miner_counter}"
        if self.config.aggregate_channels:
            await self._open_aggregated(ds, identity)
            return
        self._request_id += 1
        id_bytes = identity.encode()
        open_msg = (
            f"OpenExtendedMiningChannel {{ request_id: {self._request_id}, user_identity: "
            f"Owned([{work.bytes_list(id_bytes)}]), nominal_hash_rate: "
            f"{work.rust_f32_debug(ds.hashrate)}, "
            f"max_target: Owned([{work.le_bytes_list(ds.target)}]),"
            f" min_extranonce_size: {self.config.downstream_extranonce2_size} }}"
        )
        log.info(T_CM, f"Sending OpenExtendedMiningChannel message to upstream: {open_msg}")
        length = 43 + len(id_bytes)
        log.debug(
            T_UP,
            "Upstream: sending message from channel manager: Sv2(Sv2Frame { header: Header { "
            f"extension_type: 0, msg_type: 19, msg_length: U24({length}) }}, payload: "
            f"Some(Mining(OpenExtendedMiningChannel({open_msg}))), serialized: None }})",
        )
        log.debug(T_UP, "Sending message to upstream.")
        # Simulated pool: allocate the channel with a harder target than the miner's.
        self._next_channel += 1
        cid = self._next_channel
        prefix = b"\x00\x01" + cid.to_bytes(6, "big")
        channel = Channel(
            channel_id=cid,
            user_identity=identity,
            nominal_hashrate=ds.hashrate,
            target=work.harder_target(ds.target, self.upstream_difficulty_factor),
            extranonce_prefix=prefix,
            downstream_id=ds.downstream_id,
        )
        log.debug(T_UP, "Upstream: received frame.")
        log.info(
            T_CM_MH,
            f"Received: OpenExtendedMiningChannelSuccess(request_id: {self._request_id}, "
            f"channel_id: {cid}, target: {work.u256_display(channel.target)}, extranonce_size: "
            f"{UPSTREAM_EXTRANONCE_SIZE}, extranonce_prefix: B032({prefix.hex()})), "
            f"user_identity: {identity}, nominal_hashrate: {work.rust_f32(ds.hashrate)}",
        )
        log.debug(T_CM_MH, "\n\nrange_0: 0..8, range1: 8..28, range2: 28..32\n\n")
        job = self._job_for(channel)
        self._log_job_received(channel, job)
        self._log_prevhash_received(channel, job)
        log.debug(T_SRV, f"Received OpenExtendedMiningChannelSuccess for channel id: {cid}")
        log.debug(
            T_DS_DATA,
            f"Downstream {ds.downstream_id}: Set upstream target to "
            f"{work.target_struct(channel.target)}",
        )
        self.channels[cid] = channel
        ds.channel = channel
        ds.local_channel_id = cid
        ds.extranonce1 = prefix + bytes(19) + b"\x01"
        await self._channel_ready(ds, job)

    async def _channel_ready(self, ds: Downstream, job: Job) -> None:
        log = self.log
        log.info(
            T_SRV,
            f"Processing {len(ds.queued)} queued Sv1 messages for downstream {ds.downstream_id}",
        )
        queued, ds.queued = ds.queued, []
        for message in queued:
            await self._handle_sv1(ds, message)
        ds.set_difficulty_cached = True
        self.log.debug(
            T_DS, "Down: Caching mining.set_difficulty to send before next mining.notify"
        )
        await self._send_job(ds, job, clean=True)

    async def _open_aggregated(self, ds: Downstream, identity: str) -> None:
        """aggregate_channels = true: one upstream channel `<prefix>.translator-proxy` for all
        miners; each miner gets a local channel id and its own slice of the extranonce."""
        log = self.log
        if self.aggregated is None:
            self._request_id += 1
            proxy_identity = identity.split(".", 1)[0] + ".translator-proxy"
            id_bytes = proxy_identity.encode()
            min_size = self.config.downstream_extranonce2_size + AGGREGATED_SEARCH_SPACE_BYTES
            open_msg = (
                f"OpenExtendedMiningChannel {{ request_id: {self._request_id}, user_identity: "
                f"Owned([{work.bytes_list(id_bytes)}]), nominal_hash_rate: "
                f"{work.rust_f32_debug(ds.hashrate)}, "
                f"max_target: Owned([{work.le_bytes_list(ds.target)}]),"
                f" min_extranonce_size: {min_size} }}"
            )
            log.info(T_CM, f"Sending OpenExtendedMiningChannel message to upstream: {open_msg}")
            log.debug(
                T_UP,
                "Upstream: sending message from channel manager: Sv2(Sv2Frame { header: Header "
                f"{{ extension_type: 0, msg_type: 19, msg_length: U24({43 + len(id_bytes)}) }}, "
                f"payload: Some(Mining(OpenExtendedMiningChannel({open_msg}))), "
                "serialized: None })",
            )
            log.debug(T_UP, "Sending message to upstream.")
            self._next_channel += 1
            cid = self._next_channel
            prefix = b"\x00\x01" + cid.to_bytes(6, "big")
            self.aggregated = Channel(
                channel_id=cid,
                user_identity=proxy_identity,
                nominal_hashrate=ds.hashrate,
                target=work.harder_target(ds.target, self.upstream_difficulty_factor),
                extranonce_prefix=prefix,
                downstream_id=0,
            )
            self.channels[cid] = self.aggregated
            log.debug(T_UP, "Upstream: received frame.")
            log.info(
                T_CM_MH,
                f"Received: OpenExtendedMiningChannelSuccess(request_id: {self._request_id}, "
                f"channel_id: {cid}, target: {work.u256_display(self.aggregated.target)}, "
                f"extranonce_size: {UPSTREAM_EXTRANONCE_SIZE}, extranonce_prefix: "
                f"B032({prefix.hex()})), user_identity: {proxy_identity}, "
                f"nominal_hashrate: {work.rust_f32(ds.hashrate)}",
            )
            log.debug(T_CM_MH, "\n\nrange_0: 0..8, range1: 8..28, range2: 28..32\n\n")
            job = self._job_for(self.aggregated)
            self._log_job_received(self.aggregated, job)
            self._log_prevhash_received(self.aggregated, job)
        else:
            self.aggregated.nominal_hashrate += ds.hashrate
        channel = self.aggregated
        self._next_local_channel += 1
        local = self._next_local_channel
        log.debug(T_SRV, f"Received OpenExtendedMiningChannelSuccess for channel id: {local}")
        log.debug(
            T_DS_DATA,
            f"Downstream {ds.downstream_id}: Set upstream target to "
            f"{work.target_struct(channel.target)}",
        )
        ds.channel = channel
        ds.local_channel_id = local
        ds.extranonce1 = channel.extranonce_prefix + bytes(16) + local.to_bytes(4, "big")
        await self._channel_ready(ds, self._job_for(channel))

    async def _handle_sv1(self, ds: Downstream, message: dict[str, Any]) -> None:
        method = message.get("method")
        msg_id = message.get("id")
        params = message.get("params") or []
        if not isinstance(params, list):
            params = []
        if method == "mining.configure":
            await self._on_configure(ds, msg_id, params)
        elif method == "mining.subscribe":
            await self._on_subscribe(ds, msg_id, params)
        elif method == "mining.authorize":
            await self._on_authorize(ds, msg_id, params)
        elif method == "mining.submit":
            await self._on_submit(ds, msg_id, params)
        elif method == "mining.extranonce.subscribe":
            await self._write(ds, {"id": msg_id, "error": None, "result": True})
        else:
            await self._write(
                ds, {"id": msg_id, "error": [20, "Method not found", None], "result": None}
            )

    async def _on_configure(self, ds: Downstream, msg_id: Any, params: list[Any]) -> None:
        exts = params[0] if params and isinstance(params[0], list) else []
        ext_text = ", ".join(_rust_str(e) for e in exts)
        self.log.debug(T_SV1API, f"Configure {{ extensions: [{ext_text}], id: {msg_id} }}")
        self.log.info(T_DS_MH, "Received mining.configure from Sv1 downstream")
        self.log.debug(
            T_DS_MH,
            "Down: Handling mining.configure: "
            f"Configure {{ extensions: [{ext_text}], id: {msg_id} }}",
        )
        self.log.debug(T_DS_MH, "Negotiated version_rolling_mask is None")
        # v1.5.0 answers with an all-zero mask when none was negotiated: no version rolling
        result = {
            "version-rolling": True,
            "version-rolling.mask": "00000000",
            "version-rolling.min-bit-count": "00000000",
            "minimum-difficulty": False,
        }
        await self._write(ds, {"id": msg_id, "error": None, "result": result})

    async def _on_subscribe(self, ds: Downstream, msg_id: Any, params: list[Any]) -> None:
        agent = str(params[0]) if params else ""
        extranonce = "None"
        if len(params) > 1 and isinstance(params[1], str):
            try:
                raw = bytes.fromhex(params[1])
                extranonce = f"Some(Extranonce(Owned([{work.bytes_list(raw)}])))"
            except ValueError:
                extranonce = "None"
        self.log.info(T_DS_MH, "Received mining.subscribe from Sv1 downstream")
        self.log.debug(
            T_DS_MH,
            f"Down: Handling mining.subscribe: Subscribe {{ id: {msg_id}, agent_signature: "
            f"{_rust_str(agent)}, extranonce1: {extranonce} }}",
        )
        en1 = ds.extranonce1.hex()
        size = self.config.downstream_extranonce2_size
        result = [
            [
                ["mining.set_difficulty", str(ds.downstream_id)],
                ["mining.notify", NOTIFY_SUBSCRIPTION],
            ],
            en1,
            size,
        ]
        debug_result = (
            'Array [Array [Array [String("mining.set_difficulty"), '
            f'String("{ds.downstream_id}")], Array [String("mining.notify"), '
            f'String("{NOTIFY_SUBSCRIPTION}")]], String("{en1}"), Number({size})]'
        )
        self.log.debug(T_DS, _sending(msg_id, debug_result))
        await self._write(ds, {"id": msg_id, "error": None, "result": result})

    async def _on_authorize(self, ds: Downstream, msg_id: Any, params: list[Any]) -> None:
        name = str(params[0]) if params else ""
        password = str(params[1]) if len(params) > 1 else ""
        self.log.info(T_DS_MH, "Received mining.authorize from Sv1 downstream")
        self.log.debug(
            T_DS_MH,
            f"Down: Handling mining.authorize: Authorize {{ id: {msg_id}, name: {_rust_str(name)}, "
            f"password: {_rust_str(password)} }}",
        )
        ds.user_name = name
        ds.worker_name = name.split(".", 1)[1] if "." in name else name
        self.log.debug(T_DS, _sending(msg_id, "Bool(true)"))
        await self._write(ds, {"id": msg_id, "error": None, "result": True})
        if not ds.handshake_done:
            ds.handshake_done = True
            self.log.debug(T_DS, "Down: SV1 handshake completed for downstream")

    def _share_hash(
        self, ds: Downstream, params: list[Any]
    ) -> tuple[Job, bytes, int, int, int] | None:
        """Rebuild the header of a submitted share; None when the share is malformed/stale."""
        try:
            job = ds.jobs[str(params[1])]
            extranonce2 = bytes.fromhex(str(params[2]))
            ntime = int(str(params[3]), 16)
            nonce = int(str(params[4]), 16)
        except (IndexError, KeyError, ValueError):
            return None
        if len(extranonce2) != self.config.downstream_extranonce2_size:
            return None
        coinbase = job.coinb1 + ds.extranonce1 + extranonce2 + job.coinb2
        header = work.block_header(
            job.version, job.prevhash_le, work.merkle_root(coinbase, []), ntime, job.nbits, nonce
        )
        return job, extranonce2, ntime, nonce, work.hash_value(header)

    async def _on_submit(self, ds: Downstream, msg_id: Any, params: list[Any]) -> None:
        channel = ds.channel
        assert channel is not None
        cid = channel.channel_id
        log = self.log
        local = ds.local_channel_id
        log.info(T_DS_MH, f"Received mining.submit from SV1 downstream for channel id: {local}")
        rebuilt = self._share_hash(ds, params)
        if rebuilt is not None:
            log.debug(
                T_UTILS,
                f"share validation \nshare:\t\t{work.hash_hex(rebuilt[4])}\n"
                f"downstream target:\t{work.hash_hex(ds.target)}\n",
            )
        if rebuilt is None or rebuilt[4] > ds.target:
            log.error(T_DS_MH, f"Invalid share for channel id: {local}")
            log.debug(
                T_DS,
                _sending(msg_id, "Bool(false)"),
            )
            await self._write(ds, {"id": msg_id, "error": None, "result": False})
            return
        job, extranonce2, ntime, nonce, value = rebuilt
        ds.shares_since_update += 1
        log.debug(T_DS, _sending(msg_id, "Bool(true)"))
        await self._write(ds, {"id": msg_id, "error": None, "result": True})
        log.debug(
            T_CHAN,
            f"share validation \nshare:\t\t{work.hash_hex(value)}\n"
            f"channel target:\t{work.hash_hex(channel.target)}\n"
            f"network target:\t{work.hash_hex(work.DIFF1_TARGET)}",
        )
        share_diff = work.difficulty_from_target(value) * work.work_scale()
        channel.best_diff = max(channel.best_diff, share_diff)
        if value > channel.target:
            return
        channel.sequence_number += 1
        seq = channel.sequence_number
        channel.shares_submitted += 1
        channel_work = work.difficulty_from_target(channel.target) * work.work_scale()
        channel.validated_work_sum += channel_work
        log.info(
            T_CM,
            "SubmitSharesExtended: valid share, forwarding it to upstream | channel_id: "
            f"{cid}, sequence_number: {seq} ☑️",
        )
        full_extranonce = ds.extranonce1[len(channel.extranonce_prefix) :] + extranonce2
        log.debug(
            T_UP,
            "Upstream: sending message from channel manager: Sv2(Sv2Frame { header: Header { "
            "extension_type: 32768, msg_type: 27, msg_length: U24("
            f"{25 + len(full_extranonce)}) }}, payload: Some(Mining(SubmitSharesExtended("
            f"SubmitSharesExtended {{ channel_id: {cid}, sequence_number: {seq}, job_id: "
            f"{job.job_id}, nonce: {nonce}, ntime: {ntime}, version: {job.version}, extranonce: "
            f"Owned([{work.bytes_list(full_extranonce)}]) }}))), serialized: None }})",
        )
        log.debug(T_UP, "Sending message to upstream.")
        log.debug(T_UP, "Upstream: received frame.")
        key = (job.job_id, ds.extranonce1 + extranonce2, ntime, nonce)
        if key in channel.seen:
            channel.shares_rejected += 1
            channel.rejected_by_reason["duplicate-share"] = (
                channel.rejected_by_reason.get("duplicate-share", 0) + 1
            )
            log.warn(
                T_CM_MH,
                f"Received: SubmitSharesError(channel_id={cid}, sequence_number={seq}, "
                "error_code=duplicate-share) ❌",
            )
            return
        channel.seen.add(key)
        channel.shares_acknowledged += 1
        shares_sum = round(channel_work)
        channel.acknowledged_work_sum += shares_sum
        log.info(
            T_CM_MH,
            f"Received: SubmitSharesSuccess(channel_id={cid}, last_sequence_number={seq}, "
            f"new_submits_accepted_count={channel.shares_acknowledged}, "
            f"new_shares_sum={shares_sum}) ✅",
        )

    # ---- vardiff --------------------------------------------------------------------------
    async def _vardiff_loop(self) -> None:
        while True:
            await asyncio.sleep(self.vardiff_interval)
            await self.run_vardiff()

    async def run_vardiff(self) -> None:
        """One vardiff pass over all downstreams (the real loop runs it every 60 s)."""
        log = self.log
        spm_goal = self.config.shares_per_minute
        updates: list[Downstream] = []
        now = time.monotonic()
        for ds in list(reversed(self.downstreams.values())):
            if ds.channel is None:
                continue
            log.debug(T_DIFF, f"Updating vardiff for downstream_id: {ds.downstream_id}")
            elapsed = max(now - ds.last_update, 1e-3)
            shares = ds.shares_since_update
            realized = shares / elapsed * 60.0
            log.debug(
                T_VARDIFF,
                "Hashrate update check triggered:\n"
                f"            - Elapsed time: {int(elapsed)}s\n"
                f"            - Shares since last update: {shares}\n"
                f"            - Realized shares per minute: {realized:.4f}\n"
                f"            - Current miner target: {work.target_struct(ds.target)}",
            )
            old = ds.hashrate
            new = old * realized / spm_goal if shares else old / 3.0
            if abs(new - old) / old < 0.15:
                continue
            new = float(round(new))
            log.debug(
                T_VARDIFF,
                f"Calculated new hashrate: {new:.2f} H/s (Δ {(new - old) / old * 100:.2f}%, "
                f"previous {old:.2f} H/s)",
            )
            ds.pending_target = work.target_from_difficulty(work.real_difficulty_for(new, spm_goal))
            ds.pending_hashrate = new
            ds.shares_since_update = 0
            ds.last_update = now
            log.debug(T_DS_DATA, f"Downstream {ds.downstream_id}: Set pending target")
            log.debug(T_DS_DATA, f"Downstream {ds.downstream_id}: Set pending hashrate")
            updates.append(ds)
        if updates and self.aggregated is not None:
            await self._aggregated_update(updates)
            return
        for ds in updates:
            assert ds.channel is not None and ds.pending_target is not None
            assert ds.pending_hashrate is not None
            log.debug(
                T_DIFF,
                f"Sending UpdateChannel for downstream {ds.downstream_id}: channel_id="
                f"{ds.channel.channel_id}, hashrate={int(ds.pending_hashrate)}, target="
                f"{work.target_struct(ds.pending_target)}",
            )
        for ds in updates:
            assert ds.channel is not None and ds.pending_target is not None
            assert ds.pending_hashrate is not None
            cid = ds.channel.channel_id
            update = (
                f"UpdateChannel {{ channel_id: {cid}, nominal_hash_rate: "
                f"{work.rust_f32_debug(ds.pending_hashrate)}, maximum_target: "
                f"Owned([{work.le_bytes_list(ds.pending_target)}]) }}"
            )
            log.debug(T_CM, f"Received UpdateChannel from SV1Server: {update}")
            log.info(T_CM, f"Sending UpdateChannel message to upstream for channel_id: {cid}")
            log.debug(
                T_UP,
                "Upstream: sending message from channel manager: Sv2(Sv2Frame { header: Header { "
                "extension_type: 32768, msg_type: 22, msg_length: U24(40) }, payload: "
                f"Some(Mining(UpdateChannel({update}))), serialized: None }})",
            )
            log.debug(T_UP, "Sending message to upstream.")
        for ds in updates:
            await self._apply_set_target(ds)

    async def _aggregated_update(self, updates: list[Downstream]) -> None:
        """Aggregated vardiff: one UpdateChannel with the total hashrate and the hardest
        target; the pool's SetTarget applies to every miner."""
        log = self.log
        channel = self.aggregated
        assert channel is not None
        cid = channel.channel_id
        miners = [ds for ds in self.downstreams.values() if ds.channel is channel]
        total = sum(ds.pending_hashrate or ds.hashrate for ds in miners)
        min_target = min(ds.pending_target or ds.target for ds in miners)
        log.debug(
            T_DIFF,
            f"Sending UpdateChannel for aggregated mode: channel_id={cid}, total_hashrate="
            f"{work.rust_f32(total)} (all {len(miners)} downstreams), min_target="
            f"{work.target_struct(min_target)}, vardiff_updates={len(updates)}",
        )
        update = (
            f"UpdateChannel {{ channel_id: {cid}, nominal_hash_rate: {work.rust_f32_debug(total)}, "
            f"maximum_target: Owned([{work.le_bytes_list(min_target)}]) }}"
        )
        log.debug(T_CM, f"Received UpdateChannel from SV1Server: {update}")
        log.info(T_CM, f"Sending UpdateChannel message to upstream for channel_id: {cid}")
        log.debug(
            T_UP,
            "Upstream: sending message from channel manager: Sv2(Sv2Frame { header: Header { "
            "extension_type: 32768, msg_type: 22, msg_length: U24(40) }, payload: "
            f"Some(Mining(UpdateChannel({update}))), serialized: None }})",
        )
        log.debug(T_UP, "Sending message to upstream.")
        channel.target = work.harder_target(min_target, self.upstream_difficulty_factor)
        channel.nominal_hashrate = total
        log.debug(T_UP, "Upstream: received frame.")
        log.info(
            T_CM_MH,
            f"Received: SetTarget(channel_id={cid}, maximum_target="
            f"{work.u256_display(channel.target)})",
        )
        log.debug(T_SRV, f"Received SetTarget for channel id: {cid}")
        log.debug(
            T_DIFF,
            f"Received SetTarget for channel {cid}: new_upstream_target = "
            f"{work.target_struct(channel.target)}",
        )
        log.debug(T_DIFF, "Aggregated mode: Updating upstream target for all downstreams")
        for ds in miners:
            log.debug(
                T_DS_DATA,
                f"Downstream {ds.downstream_id}: Set upstream target to "
                f"{work.target_struct(channel.target)}",
            )
        for ds in updates:
            assert ds.pending_target is not None and ds.pending_hashrate is not None
            ds.next_target = ds.pending_target
            ds.hashrate = ds.pending_hashrate
            ds.pending_target = None
            ds.pending_hashrate = None
            ds.set_difficulty_cached = True
            log.debug(T_DS, "Down: Caching mining.set_difficulty to send before next mining.notify")

    async def _apply_set_target(self, ds: Downstream) -> None:
        """The simulated pool answers UpdateChannel with SetTarget; the proxy applies it."""
        assert ds.channel is not None and ds.pending_target is not None
        assert ds.pending_hashrate is not None
        log = self.log
        channel = ds.channel
        cid = channel.channel_id
        channel.target = work.harder_target(ds.pending_target, self.upstream_difficulty_factor)
        channel.nominal_hashrate = ds.pending_hashrate
        log.debug(T_UP, "Upstream: received frame.")
        log.info(
            T_CM_MH,
            f"Received: SetTarget(channel_id={cid}, maximum_target="
            f"{work.u256_display(channel.target)})",
        )
        log.debug(T_SRV, f"Received SetTarget for channel id: {cid}")
        log.debug(
            T_DIFF,
            f"Received SetTarget for channel {cid}: new_upstream_target = "
            f"{work.target_struct(channel.target)}",
        )
        log.debug(T_DIFF, f"Non-aggregated mode: Processing SetTarget for channel {cid}")
        log.debug(
            T_DS_DATA,
            f"Downstream {ds.downstream_id}: Set upstream target to "
            f"{work.target_struct(channel.target)}",
        )
        ds.next_target = ds.pending_target
        ds.hashrate = ds.pending_hashrate
        ds.pending_target = None
        ds.pending_hashrate = None
        ds.set_difficulty_cached = True
        log.debug(T_DS, "Down: Caching mining.set_difficulty to send before next mining.notify")

    # ---- monitoring views ------------------------------------------------------------------
    def server_channels(self) -> list[dict[str, Any]]:
        out = []
        for ch in sorted(self.channels.values(), key=lambda c: c.channel_id):
            out.append(
                {
                    "channel_id": ch.channel_id,
                    "user_identity": ch.user_identity,
                    "nominal_hashrate": ch.nominal_hashrate,
                    "target_hex": work.hash_hex(ch.target),
                    "extranonce_prefix_hex": ch.extranonce_prefix.hex(),
                    "full_extranonce_size": len(ch.extranonce_prefix) + UPSTREAM_EXTRANONCE_SIZE,
                    "rollable_extranonce_size": UPSTREAM_EXTRANONCE_SIZE,
                    "version_rolling": True,
                    "shares_acknowledged": ch.shares_acknowledged,
                    "shares_submitted": ch.shares_submitted,
                    "shares_rejected": ch.shares_rejected,
                    "shares_rejected_by_reason": dict(ch.rejected_by_reason),
                    "acknowledged_work_sum": ch.acknowledged_work_sum,
                    "validated_work_sum": ch.validated_work_sum,
                    "best_diff": ch.best_diff,
                    "blocks_found": 0,
                }
            )
        return out

    def sv1_clients(self) -> list[dict[str, Any]]:
        out = []
        for ds in sorted(self.downstreams.values(), key=lambda d: d.downstream_id):
            out.append(
                {
                    "client_id": ds.downstream_id,
                    "channel_id": ds.local_channel_id if ds.channel else None,
                    "connection_ip": ds.peer.rsplit(":", 1)[0],
                    "sv1_username": ds.user_name,
                    "sv1_worker_name": ds.worker_name,
                    "target_hex": work.hash_hex(ds.target),
                    "hashrate": ds.hashrate,
                    "stable_hashrate": False,
                    "extranonce1_hex": ds.extranonce1.hex(),
                    "extranonce2_len": self.config.downstream_extranonce2_size,
                    "version_rolling_mask": None,
                    "version_rolling_min_bit": None,
                }
            )
        return out
