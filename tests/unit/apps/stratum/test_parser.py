"""The stratum stats API's log parser on the real translator_sv2 v1.5.0 logs and line kinds."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from scnode_stratum.parser import Event, TranslatorLogParser, difficulty_of_target, member_of
from simnet.translator.logfmt import format_line
from tests.upstream_fixtures import FIXTURES as UPSTREAM_FIXTURES

FIXTURES = UPSTREAM_FIXTURES / "translator"
REAL = FIXTURES / "real-v1.5.0"
needs_fixtures = pytest.mark.skipif(
    not REAL.is_dir(), reason="shared translator fixtures not present on this machine"
)


def shares(events: list[Event]) -> Counter[tuple[str, str | None]]:
    out: Counter[tuple[str, str | None]] = Counter()
    for e in events:
        out[(e.kind, e.worker)] += e.submitted + e.accepted + e.rejected
    return out


def parse_file(path: Path) -> tuple[TranslatorLogParser, list[Event]]:
    parser = TranslatorLogParser()
    return parser, parser.feed(path.read_text().split("\n"))


@needs_fixtures
def test_real_debug_log_attributes_every_share_to_its_worker() -> None:
    _, events = parse_file(REAL / "debug" / "translator.log")
    counted = shares(events)
    # 132 submits and 69 SubmitSharesSuccess lines in the recorded run (grep -c)
    text = (REAL / "debug" / "translator.log").read_text()
    assert counted["submit", "alice.rig1"] + counted["submit", "bob.rig2"] == text.count(
        "Received mining.submit"
    )
    assert counted["accept", "alice.rig1"] + counted["accept", "bob.rig2"] == text.count(
        "SubmitSharesSuccess"
    )
    assert counted["accept", "alice.rig1"] == 35
    assert counted["accept", "bob.rig2"] == 34
    accepts = [e for e in events if e.kind == "accept"]
    assert all(e.diff_sum > 0 for e in accepts)


@needs_fixtures
def test_real_info_log_has_no_worker_names_and_keeps_shares_per_channel() -> None:
    parser, events = parse_file(REAL / "info" / "translator.log")
    counted = shares(events)
    # the README's counts: channel 1: 64 submits, 34 accepted; channel 2: 66, 34
    assert counted["submit", "channel:sri_user.miner1"] == 64
    assert counted["accept", "channel:sri_user.miner1"] == 34
    assert counted["submit", "channel:sri_user.miner2"] == 66
    assert counted["accept", "channel:sri_user.miner2"] == 34
    assert member_of("channel:sri_user.miner1") is None
    assert parser.counters.unknown > 0 or parser.counters.records == 321


@needs_fixtures
def test_state_survives_a_restart_between_any_two_lines() -> None:
    lines = (REAL / "debug" / "translator.log").read_text().split("\n")
    _, whole = parse_file(REAL / "debug" / "translator.log")
    for cut in (60, 95, 400, 1200):
        first = TranslatorLogParser()
        events = first.feed(lines[:cut])
        second = TranslatorLogParser()
        second.load_state(json.loads(json.dumps(first.state())))
        events += second.feed(lines[cut:])
        assert shares(events) == shares(whole), cut


@needs_fixtures
@pytest.mark.parametrize("level", ["debug", "info"])
def test_no_line_that_matters_goes_unparsed(level: str) -> None:
    important = (
        "mining.submit from",
        "SubmitSharesSuccess",
        "SubmitSharesError",
        "Received: OpenExtendedMiningChannelSuccess(",
        "SetTarget(",
        "Handling mining.authorize",
        "registered successfully",
        "Connected to upstream",
    )
    lines = (REAL / level / "translator.log").read_text().split("\n")
    wanted = [line for line in lines if any(key in line for key in important)]
    parser = TranslatorLogParser()
    events = parser.feed(wanted)
    assert len(events) == len(wanted)
    assert parser.counters.unknown == 0


def test_difficulty_and_member() -> None:
    assert difficulty_of_target("00000000ffff" + "0" * 52) == pytest.approx(1.0)
    assert difficulty_of_target("0000000000ffff" + "0" * 50) == pytest.approx(256.0)
    assert member_of("alice.rig1") == "alice"
    assert member_of("bob") == "bob"
    assert member_of("carol_x-1", "_") == "carol"


def _one(message: str, level: str = "info", target: str = "translator_sv2") -> list[Event]:
    return TranslatorLogParser().feed([format_line(level, target, message)])


@pytest.mark.parametrize(
    ("level", "target", "message", "kind"),
    [
        (
            "info",
            "translator_sv2::sv2::upstream::upstream",
            "Connected to upstream at 127.0.0.1:34265 (attempt 1/3)",
            "upstream_connect",
        ),
        (
            "info",
            "translator_sv2::sv2::upstream",
            "Connected to upstream at 75.119.150.111:3333",
            "upstream_connect",
        ),
        (
            "warn",
            "translator_sv2",
            "Upstream connection dropped: ChannelErrorReceiver(RecvError) — attempting "
            "reconnection...",
            "upstream_disconnect",
        ),
        ("info", "translator_sv2", "Upstream restarted successfully.", "upstream_reconnect"),
        ("info", "translator_sv2", "Starting Translator Proxy...", "translator_start"),
        (
            "info",
            "translator_sv2::sv2::channel_manager::message_handler",
            "Received: SetNewPrevHash(channel_id=1, job_id=2, prev_hash=U256(ab), "
            "min_ntime=1, nbits=2)",
            "prevhash",
        ),
        (
            "info",
            "translator_sv2::sv2::channel_manager::message_handler",
            "Received: NewExtendedMiningJob(channel_id: 2, job_id: 1, min_ntime: Sv2Option(None))",
            "job",
        ),
        (
            "error",
            "translator_sv2::sv1::downstream::message_handler",
            "Invalid share for channel id: 3",
            "reject",
        ),
        (
            "warn",
            "translator_sv2::sv2::channel_manager::message_handler",
            "Received: SubmitSharesError(channel_id=2, sequence_number=7, "
            "error_code=duplicate-share) ❌",
            "reject",
        ),
        (
            "info",
            "pool_sv2::mining_pool::message_handler",
            "SubmitSharesExtended: 💰 Block Found!!! 💰",
            "block_found",
        ),
        (
            "info",
            "translator_sv2::sv1::sv1_server::sv1_server",
            "🔌 Downstream: 4 disconnected and removed from sv1 server downstreams",
            "disconnect",
        ),
        (
            "info",
            "translator_sv2::sv1::sv1_server::sv1_server",
            "🔌 All downstreams removed from sv1 server as upstream reconnected",
            "disconnect",
        ),
        (
            "error",
            "translator_sv2::sv1::downstream::downstream",
            "Error receiving downstream message: RecvError",
            "log_error",
        ),
        (
            "info",
            "translator_sv2::sv2::channel_manager::message_handler",
            "Received: SetTarget(channel_id=1, maximum_target=U256(00000000ffff" + "0" * 52 + "))",
            "difficulty",
        ),
    ],
)
def test_line_kinds(level: str, target: str, message: str, kind: str) -> None:
    events = _one(message, level, target)
    assert [e.kind for e in events] == [kind]
    if kind == "reject":
        assert events[0].rejected == 1
    if kind == "difficulty":
        assert events[0].data == {"difficulty": pytest.approx(1.0)}


def test_v13_submit_names_the_worker() -> None:
    line = (
        (FIXTURES / "old-architecture-v1.3.log").read_text().split("\n")
        if (FIXTURES / "old-architecture-v1.3.log").exists()
        else [
            "2024-03-11T23:01:19.954422Z DEBUG "
            "translator_sv2::lib::downstream_sv1::downstream: Down: "
            'Handling mining.submit: Submit { user_name: "tb1q68v0", job_id: "16" }'
        ]
    )
    events = TranslatorLogParser().feed(line)
    submits = [e for e in events if e.kind == "submit"]
    assert len(submits) == 1 and submits[0].worker and submits[0].worker.startswith("tb1q")


def test_unknown_and_garbage_lines_are_counted_not_fatal() -> None:
    parser = TranslatorLogParser()
    events = parser.feed(
        [
            format_line(
                "debug", "translator_sv2::sv2::upstream::upstream", "Upstream: received frame."
            ),
            "garbage \x00 not a record",
            "",
            format_line("info", "translator_sv2", "something new in a later release"),
        ]
    )
    assert events == []
    assert parser.counters.unknown == 2
    assert parser.counters.continuation == 2
    assert parser.counters.lines == 4


def test_vardiff_and_accept_deltas_with_channel_reset() -> None:
    from scnode_stratum import synthetic

    lines = [*synthetic.start_lines(), *synthetic.connect_lines(1, "alice.rig1")]
    lines += synthetic.share_lines(1, 1) + synthetic.share_lines(1, 2)
    # a batch acknowledgement: the running count jumps by 3
    lines += synthetic.share_lines(1, 5)
    # the channel restarts counting (pool reconnect without our seeing the open): 1 share
    lines += synthetic.share_lines(1, 1)
    events = TranslatorLogParser().feed(lines)
    assert sum(e.accepted for e in events if e.worker == "alice.rig1") == 1 + 1 + 3 + 1
