"""The translator stand-in writes the real translator_sv2 v1.5.0 log: same line format, same
message shapes, worker names only at debug."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from simnet.pytest_mining import (
    PROJECT_ROOT,
    MinerProcess,
    TranslatorProcess,
    free_port,
    wait_for,
)
from simnet.translator.config import render_config
from simnet.translator.logfmt import LEVELS, format_line, level_from_rust_log
from simnet.translator.logparse import RECORD_START, parse_records, shapes
from tests.upstream_fixtures import FIXTURES

REAL = FIXTURES / "translator" / "real-v1.5.0"
# The tests that compare with the recorded real logs skip, saying so, where they are absent.
needs_real = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"recorded translator logs not present ({REAL})"
)

# Messages of translator_sv2 v1.5.0 that the recorded run did not happen to produce, with the
# source file they come from (roles/translator/src/lib/… at tag v1.5.0). Shapes as `shape()`
# prints them.
FROM_SOURCE = {
    # sv1/downstream/message_handler.rs: a share above the miner's target or for an unknown job
    "ERROR translator_sv2::sv1::downstream::message_handler: Invalid share for channel id: N",
    "DEBUG translator_sv2::sv1::downstream::downstream: Down: Sending SvN message to downstream:"
    " Response { id: N, error: None, result: Bool(false) }",
    # sv2/channel_manager/message_handler.rs: the pool's verdict on a forwarded share
    "WARN translator_sv2::sv2::channel_manager::message_handler: Received: SubmitSharesError("
    "channel_id=N, sequence_number=N, error_code=duplicate-share) ❌",
    # a miner disconnecting: sv1/downstream/downstream.rs, status.rs, mod.rs, sv1_server.rs
    "ERROR translator_sv2::sv1::downstream::downstream: Error receiving downstream message: "
    "RecvError",
    "ERROR translator_sv2::sv1::downstream::downstream: Downstream N: error in downstream message "
    "handler: ChannelErrorReceiver(RecvError)",
    "WARN translator_sv2::status: Downstream [N] shutting down due to error: "
    "ChannelErrorReceiver(RecvError)",
    "DEBUG translator_sv2::status: Sending status from Downstream [N]: DownstreamShutdown { "
    "downstream_id: N, reason: ChannelErrorReceiver(RecvError) }",
    "WARN translator_sv2::sv1::downstream::downstream: Downstream N: unified task shutting down",
    "WARN translator_sv2: Downstream N disconnected — notifying SV1 server.",
    "INFO translator_sv2::sv1::sv1_server::sv1_server: 🔌 Downstream: N disconnected and removed "
    "from sv1 server downstreams",
    "INFO translator_sv2::sv1::sv1_server::sv1_server: Sending CloseChannel message: N for "
    "downstream: N",
    # the pool dropping the SV2 connection: sv2/upstream/upstream.rs, status.rs, mod.rs,
    # sv2/channel_manager/channel_manager.rs, sv1_server.rs, sv1/downstream/downstream.rs
    "ERROR translator_sv2::sv2::upstream::upstream: Upstream: receiver channel closed "
    "unexpectedly: receiving from an empty and closed channel",
    "WARN translator_sv2::status: Upstream shutting down due to error: "
    "ChannelErrorReceiver(RecvError)",
    "WARN translator_sv2::sv2::upstream::upstream: Upstream: task shutting down cleanly.",
    "WARN translator_sv2: Upstream connection dropped: ChannelErrorReceiver(RecvError) — "
    "attempting reconnection...",
    "INFO translator_sv2: Upstream restarted successfully.",
    "INFO translator_sv2::sv2::channel_manager::channel_manager: ChannelManager: upstream "
    "reconnected, resetting channel state.",
    "INFO translator_sv2::sv1::sv1_server::sv1_server: 🔌 All downstreams removed from svN "
    "server as upstream reconnected",
    "INFO translator_sv2::sv1::downstream::downstream: All downstream shutdown message received "
    "(upstream reconnected)",
    # network-helpers sv1_connection.rs: a line that is not JSON
    "ERROR network_helpers_sv2::sv1_connection: Failed to deserialize message: Error(S)",
}

# aggregate_channels = true (sv1_server/difficulty_manager.rs, channel_manager.rs at v1.5.0)
AGGREGATED_FROM_SOURCE = {
    "DEBUG translator_sv2::sv1::sv1_server::difficulty_manager: Sending UpdateChannel for "
    "aggregated mode: channel_id=N, total_hashrate=N (all N downstreams), min_target=Target { "
    "head: H, tail: H }, vardiff_updates=N",
    "DEBUG translator_sv2::sv1::sv1_server::difficulty_manager: Aggregated mode: Updating "
    "upstream target for all downstreams",
    "INFO translator_sv2::sv2::channel_manager::message_handler: Received: "
    "OpenExtendedMiningChannelSuccess(request_id: N, channel_id: N, target: UN(H), "
    "extranonce_size: N, extranonce_prefix: BN(H)), user_identity: ID.translator-proxy, "
    "nominal_hashrate: N",
}


def _records_of(text: str) -> list[str]:
    return [line for line in text.split("\n") if RECORD_START.match(line)]


@needs_real
def test_record_regex_matches_every_real_line() -> None:
    for level in ("info", "debug"):
        text = (REAL / level / "translator.log").read_text(encoding="utf-8")
        starts = _records_of(text)
        stamped = [line for line in text.split("\n") if re.match(r"^\d{4}-\d\d-\d\dT", line)]
        assert starts and len(starts) == len(stamped)


@needs_real
def test_format_line_matches_real_layout() -> None:
    real_info = (REAL / "info" / "translator.log").read_text(encoding="utf-8").split("\n")[0]
    stamp = real_info[:26]
    when = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.UTC)
    assert format_line("info", "translator_sv2", "Starting Translator Proxy...", when) == real_info
    assert format_line("debug", "x", "y", when).startswith(stamp + "Z DEBUG x: ")
    assert format_line("warn", "x", "y", when).startswith(stamp + "Z  WARN x: ")


@pytest.mark.parametrize(
    ("value", "level"),
    [
        (None, "info"),
        ("info", "info"),
        ("debug", "debug"),
        ("DEBUG", "debug"),
        ("warn", "warn"),
        ("off", "off"),
        ("translator_sv2=debug", "info"),
        ("info,translator_sv2=debug", "info"),
    ],
)
def test_rust_log_is_read_as_one_level(value: str | None, level: str) -> None:
    assert level_from_rust_log(value) == LEVELS[level]


@needs_real
def test_miners_authorize_and_submit_with_real_log_shapes(
    translator: TranslatorProcess,
    miners_factory: Callable[[str, dict[str, str]], MinerProcess],
) -> None:
    miners = miners_factory(translator.url, {"alice.rig1": "1T", "bob.rig2": "1T"})

    def acknowledged() -> bool:
        channels = translator.channels()
        return len(channels) == 2 and all(c["shares_acknowledged"] >= 2 for c in channels)

    wait_for(acknowledged, timeout=40, what="two acknowledged shares per channel")
    status = miners.status()
    assert all(m["authorized"] and m["accepted"] >= 2 for m in status.values())

    text = translator.log_text()
    records = parse_records(text)
    assert records, "empty log"
    assert all(RECORD_START.match(line) or not line.startswith("20") for line in text.split("\n"))
    # Worker names appear only in the debug authorize line; channels are <identity>.minerN.
    authorize = [r.message for r in records if "Down: Handling mining.authorize" in r.message]
    assert any('name: "alice.rig1"' in m for m in authorize)
    assert any('name: "bob.rig2"' in m for m in authorize)
    opened = [r.message for r in records if "OpenExtendedMiningChannelSuccess(" in r.message]
    assert {m.rsplit("user_identity: ", 1)[1].split(",")[0] for m in opened} == {
        "sri_user.miner1",
        "sri_user.miner2",
    }
    # Every message kind we wrote exists in the real v1.5.0 logs with the same shape (or, for
    # the few the recorded run did not produce, in the v1.5.0 source).
    real = shapes(parse_records((REAL / "info" / "translator.log").read_text(encoding="utf-8")))
    real |= shapes(parse_records((REAL / "debug" / "translator.log").read_text(encoding="utf-8")))
    ours = shapes(records)
    assert ours - real - FROM_SOURCE == set()
    # and the stdout copy is the same log
    stdout_records = parse_records(translator.stdout_path.read_text(encoding="utf-8"))
    assert len(stdout_records) >= len(records) - 5


@needs_real
def test_info_level_has_no_worker_names(
    translator_factory: Callable[..., TranslatorProcess],
    miners_factory: Callable[[str, dict[str, str]], MinerProcess],
) -> None:
    translator = translator_factory(rust_log="translator_sv2=debug")
    miners_factory(translator.url, {"carol.rig9": "2T"})
    wait_for(
        lambda: any(c["shares_acknowledged"] >= 1 for c in translator.channels()),
        timeout=40,
        what="an acknowledged share",
    )
    records = parse_records(translator.log_text())
    assert {r.level for r in records} <= {"INFO", "WARN", "ERROR"}
    assert "carol.rig9" not in translator.log_text()
    assert any("Received mining.authorize from Sv1 downstream" in r.message for r in records)
    real_info = shapes(parse_records((REAL / "info" / "translator.log").read_text("utf-8")))
    assert shapes(records) - real_info - FROM_SOURCE == set()


@needs_real
def test_upstream_drop_resets_channels_and_miners_come_back(
    translator: TranslatorProcess,
    miners_factory: Callable[[str, dict[str, str]], MinerProcess],
) -> None:
    miners = miners_factory(translator.url, {"alice.rig1": "2T", "bob.rig2": "2T"})
    wait_for(
        lambda: (
            len(translator.channels()) == 2
            and all(c["shares_acknowledged"] >= 1 for c in translator.channels())
        ),
        timeout=40,
        what="shares on both channels",
    )
    assert translator.proc is not None
    translator.proc.send_signal(signal.SIGUSR2)  # simnet: the pool drops the SV2 connection
    wait_for(
        lambda: (
            all(m["connects"] >= 2 for m in miners.status().values())
            and len(translator.channels()) == 2
            and all(c["shares_acknowledged"] >= 1 for c in translator.channels())
        ),
        timeout=45,
        what="miners to reconnect and mine on new channels",
    )
    text = translator.log_text()
    assert "Upstream connection dropped: ChannelErrorReceiver(RecvError)" in text
    assert text.count("Trying to connect to upstream 0 at") == 2
    # new channels from the new connection, new channel names
    identities = {c["user_identity"] for c in translator.channels()}
    assert identities == {"sri_user.miner3", "sri_user.miner4"}
    assert {c["channel_id"] for c in translator.channels()} == {1, 2}
    real = shapes(parse_records((REAL / "info" / "translator.log").read_text(encoding="utf-8")))
    real |= shapes(parse_records((REAL / "debug" / "translator.log").read_text(encoding="utf-8")))
    assert shapes(parse_records(text)) - real - FROM_SOURCE == set()


def test_log_file_option_overrides_the_config(tmp_path: Path) -> None:
    config = tmp_path / "proxy-config.toml"
    config.write_text(
        render_config(
            upstream_port=free_port(),
            downstream_port=free_port(),
            user_identity="x",
            log_file=str(tmp_path / "from-config.log"),
        )
    )
    override = tmp_path / "from-flag.log"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "RUST_LOG": "info"}
    # -c defaults to proxy-config.toml in the working directory, like the real binary
    proc = subprocess.Popen(
        [sys.executable, "-m", "simnet.translator", "-f", str(override)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: override.exists() and "Translator Proxy: listening" in override.read_text(),
            what="the log in the -f file",
        )
        assert not (tmp_path / "from-config.log").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@needs_real
def test_aggregated_mode_shares_one_upstream_channel(
    translator_factory: Callable[..., TranslatorProcess],
    miners_factory: Callable[[str, dict[str, str]], MinerProcess],
) -> None:
    translator = translator_factory(aggregate_channels=True, user_identity="btc-SN7")
    miners_factory(translator.url, {"kim.rig1": "2T", "lee.rig2": "2T"})
    submit = "Received mining.submit from SV1 downstream for channel id: {}\n"
    wait_for(
        lambda: (
            len(translator.sv1_clients()) == 2
            and all(submit.format(local) in translator.log_text() for local in (1, 2))
            and translator.channels()[0]["shares_acknowledged"] >= 3
        ),
        timeout=40,
        what="both miners mining on the shared channel",
    )
    channels = translator.channels()
    assert [c["user_identity"] for c in channels] == ["btc-SN7.translator-proxy"]
    clients = translator.sv1_clients()
    assert sorted(c["channel_id"] for c in clients) == [1, 2]
    assert len({c["extranonce1_hex"] for c in clients}) == 2
    text = translator.log_text()
    assert text.count("Sending OpenExtendedMiningChannel message to upstream") == 1
    assert "for channel id: 2" in text  # the second miner's local channel
    assert "forwarding it to upstream | channel_id: 2," not in text  # forwarded on channel 1
    real = shapes(parse_records((REAL / "info" / "translator.log").read_text(encoding="utf-8")))
    real |= shapes(parse_records((REAL / "debug" / "translator.log").read_text(encoding="utf-8")))
    extra = shapes(parse_records(text)) - real - FROM_SOURCE
    assert extra <= AGGREGATED_FROM_SOURCE, extra - AGGREGATED_FROM_SOURCE
