"""Synthetic translator_sv2 v1.5.0 debug log lines (tests and benchmarks only).

Messages and targets are copies of the real ones in ``shared/fixtures/translator/real-v1.5.0``;
every acknowledged share is one ``SubmitSharesSuccess`` line, so a test can count them.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

T_SRV = "translator_sv2::sv1::sv1_server::sv1_server"
T_DS_MH = "translator_sv2::sv1::downstream::message_handler"
T_CM = "translator_sv2::sv2::channel_manager::channel_manager"
T_CM_MH = "translator_sv2::sv2::channel_manager::message_handler"
TARGET = "0000035afe4815484b81c2bca2a9eedde2d8438468a41f7cfa93b997fa72a7ce"


def line(level: str, target: str, message: str, when: float | None = None) -> str:
    moment = dt.datetime.fromtimestamp(time.time() if when is None else when, dt.UTC)
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S.%f')}Z {level.upper():>5} {target}: {message}"


def start_lines(when: float | None = None) -> list[str]:
    return [
        line("info", "translator_sv2", "Starting Translator Proxy...", when),
        line(
            "info",
            "translator_sv2::sv2::upstream::upstream",
            "Connected to upstream at 127.0.0.1:34254 (attempt 1/3)",
            when,
        ),
    ]


def connect_lines(ds: int, worker: str, when: float | None = None) -> list[str]:
    """A miner connecting as downstream ``ds`` (channel ``ds``) and authorizing ``worker``."""
    return [
        line("info", T_SRV, f"New SV1 downstream connection from 127.0.0.1:{40000 + ds}", when),
        line(
            "info",
            T_SRV,
            f"Downstream {ds} registered successfully (channel will be opened after first message)",
            when,
        ),
        line(
            "info",
            T_SRV,
            f"SV1 Server: Opening extended mining channel for downstream {ds} after receiving "
            "first message",
            when,
        ),
        line(
            "info",
            T_CM,
            f"Sending OpenExtendedMiningChannel message to upstream: OpenExtendedMiningChannel "
            f"{{ request_id: {ds}, user_identity: Owned([115]), nominal_hash_rate: 500000.0 }}",
            when,
        ),
        line(
            "info",
            T_CM_MH,
            f"Received: OpenExtendedMiningChannelSuccess(request_id: {ds}, channel_id: {ds}, "
            f"target: U256({TARGET}), extranonce_size: 24, extranonce_prefix: "
            f"B032(000100000000000{ds})), user_identity: sri_user.miner{ds}, "
            "nominal_hashrate: 500000",
            when,
        ),
        line("info", T_DS_MH, "Received mining.authorize from Sv1 downstream", when),
        line(
            "debug",
            T_DS_MH,
            f'Down: Handling mining.authorize: Authorize {{ id: 3, name: "{worker}", '
            'password: "x" }',
            when,
        ),
    ]


def share_lines(channel: int, count: int, when: float | None = None) -> list[str]:
    """One submitted share that the pool acknowledged (running count ``count``)."""
    return [
        line(
            "info",
            T_DS_MH,
            f"Received mining.submit from SV1 downstream for channel id: {channel}",
            when,
        ),
        line(
            "info",
            T_CM,
            f"SubmitSharesExtended: valid share, forwarding it to upstream | channel_id: "
            f"{channel}, sequence_number: {count} ☑️",
            when,
        ),
        line(
            "info",
            T_CM_MH,
            f"Received: SubmitSharesSuccess(channel_id={channel}, last_sequence_number={count}, "
            f"new_submits_accepted_count={count}, new_shares_sum=0) ✅",
            when,
        ),
        line("debug", "translator_sv2::sv2::upstream::upstream", "Upstream: received frame.", when),
    ]


def session(workers: list[str], shares: int, when: float | None = None) -> Iterator[str]:
    """A translator start, ``workers`` connecting, then ``shares`` acknowledged shares spread
    round-robin (4 lines per share)."""
    yield from start_lines(when)
    for i, worker in enumerate(workers, start=1):
        yield from connect_lines(i, worker, when)
    counts = [0] * len(workers)
    for n in range(shares):
        i = n % len(workers)
        counts[i] += 1
        yield from share_lines(i + 1, counts[i], when)
