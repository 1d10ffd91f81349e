"""Share validation, rejects, vardiff, log rotation, restart and the monitoring counters."""

from __future__ import annotations

import json
import re
import shutil
import socket
import struct
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from simnet.pytest_mining import MinerProcess, TranslatorProcess, wait_for
from simnet.translator import work
from simnet.translator.logparse import parse_records


class RawMiner:
    """A hand-driven SV1 client, to send exactly the shares a test wants."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.next_id = 10
        self.notify: list[Any] = []
        self.difficulty = 0.0
        self.extranonce1 = b""
        self.extranonce2_size = 4

    def send(self, method: str, params: list[Any]) -> int:
        self.next_id += 1
        line = json.dumps({"id": self.next_id, "method": method, "params": params}) + "\n"
        self.sock.sendall(line.encode())
        return self.next_id

    def read(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        msg: dict[str, Any] = json.loads(line)
        if msg.get("method") == "mining.notify":
            self.notify = msg["params"]
        elif msg.get("method") == "mining.set_difficulty":
            self.difficulty = float(msg["params"][0])
        return msg

    def reply_to(self, msg_id: int) -> dict[str, Any]:
        while True:
            msg = self.read()
            if msg.get("id") == msg_id:
                return msg

    def handshake(self, worker: str) -> None:
        sub = self.reply_to(self.send("mining.subscribe", ["raw/1"]))
        self.extranonce1 = bytes.fromhex(sub["result"][1])
        self.extranonce2_size = sub["result"][2]
        assert self.reply_to(self.send("mining.authorize", [worker, "x"]))["result"] is True
        while not self.notify or not self.difficulty:
            self.read()

    def find_share(self, target: int, en2: int = 1, above: bool = False) -> tuple[list[Any], int]:
        """Search nonces until the share hash is at most `target` (or, `above`, over it)."""
        p = self.notify
        extranonce2 = en2.to_bytes(self.extranonce2_size, "big")
        coinbase = bytes.fromhex(p[2]) + self.extranonce1 + extranonce2 + bytes.fromhex(p[3])
        prefix = (
            struct.pack("<I", int(p[5], 16))
            + work.swap_words(bytes.fromhex(p[1]))
            + work.merkle_root(coinbase, [])
            + struct.pack("<II", int(p[7], 16), int(p[6], 16))
        )
        for nonce in range(1 << 20):
            value = work.hash_value(prefix + struct.pack("<I", nonce))
            if (value > target) if above else (value <= target):
                return [p[0], extranonce2.hex(), p[7], f"{nonce:08x}"], value
        raise AssertionError("no share found")

    def close(self) -> None:
        self.sock.close()


def test_bad_and_duplicate_shares_are_rejected(
    translator_factory: Callable[..., TranslatorProcess],
) -> None:
    # Long job interval: the job must not change while the test mines by hand.
    translator = translator_factory(job_interval=60.0, enable_vardiff=False)
    raw = RawMiner(translator.port)
    try:
        raw.handshake("dave.rig1")
        miner_target = work.target_from_difficulty(raw.difficulty)
        # a share whose hash is above the miner's target
        bad_params, value = raw.find_share(miner_target, above=True)
        assert value > miner_target
        reply = raw.reply_to(raw.send("mining.submit", ["dave.rig1", *bad_params]))
        assert reply["result"] is False
        # a share for a job that does not exist
        reply = raw.reply_to(
            raw.send("mining.submit", ["dave.rig1", "999", "00000001", bad_params[2], "00000000"])
        )
        assert reply["result"] is False
        # a good share meeting the upstream channel target, sent twice
        channel_target = int(translator.channels()[0]["target_hex"], 16)
        good, _ = raw.find_share(channel_target, en2=7)
        assert raw.reply_to(raw.send("mining.submit", ["dave.rig1", *good]))["result"] is True
        assert raw.reply_to(raw.send("mining.submit", ["dave.rig1", *good]))["result"] is True

        def counted() -> bool:
            c = translator.channels()[0]
            return bool(c["shares_acknowledged"] == 1 and c["shares_rejected"] == 1)

        wait_for(counted, what="one acknowledged and one rejected share")
        channel = translator.channels()[0]
        assert channel["shares_submitted"] == 2
        assert channel["shares_rejected_by_reason"] == {"duplicate-share": 1}
        text = translator.log_text()
        invalid = "ERROR translator_sv2::sv1::downstream::message_handler: Invalid share for"
        assert text.count(f"{invalid} channel id: 1") == 2
        assert re.search(
            r"  WARN translator_sv2::sv2::channel_manager::message_handler: Received: "
            r"SubmitSharesError\(channel_id=1, sequence_number=2, error_code=duplicate-share\) ❌",
            text,
        )
    finally:
        raw.close()
    # the disconnect is logged like the real proxy does
    closed = "Sending CloseChannel message: 1 for downstream: 1"
    wait_for(lambda: closed in translator.log_text(), what="the disconnect")
    assert "🔌 Downstream: 1 disconnected" in translator.log_text()
    assert translator.channels() == []


def test_vardiff_converges_towards_shares_per_minute(
    translator_factory: Callable[..., TranslatorProcess],
    miners_factory: Callable[[str, dict[str, str]], MinerProcess],
) -> None:
    # The miner runs at 4x the configured minimum; vardiff must find its hashrate.
    translator = translator_factory(
        min_hashrate=1e12, shares_per_minute=120.0, vardiff_interval=2.0, job_interval=1.0
    )
    miners_factory(translator.url, {"erin.rig1": "4T"})

    def converged() -> bool:
        clients = translator.sv1_clients()
        return bool(clients) and 2.4e12 <= clients[0]["hashrate"] <= 6.4e12

    wait_for(converged, timeout=45, what="vardiff to estimate ~4 TH/s")
    assert "Sending UpdateChannel message to upstream for channel_id: 1" in translator.log_text()


def _stdout_records(translator: TranslatorProcess) -> list[str]:
    return [
        f"{r.level} {r.target}: {r.message}"
        for r in parse_records(translator.stdout_path.read_text(encoding="utf-8"))
    ]


def _assert_same_records(files: list[str], stdout: list[str]) -> None:
    """The rotated files together hold exactly the records the proxy wrote to stdout."""
    for i, (a, b) in enumerate(zip(files, stdout, strict=False)):
        assert a == b, f"record {i} differs: file {a[:120]!r} stdout {b[:120]!r}"
    assert len(files) == len(stdout), f"{len(files)} records in files, {len(stdout)} on stdout"


def _file_records(*texts: str) -> list[str]:
    out: list[str] = []
    for text in texts:
        out += [f"{r.level} {r.target}: {r.message}" for r in parse_records(text)]
    return out


def test_log_rotation_by_move_and_sighup_loses_no_line(
    translator: TranslatorProcess,
    miners_factory: Callable[[str, dict[str, str]], MinerProcess],
) -> None:
    miners_factory(translator.url, {"alice.rig1": "2T"})
    wait_for(lambda: "SubmitSharesSuccess" in translator.log_text(), timeout=40, what="a share")
    rotated = translator.log_path.with_name(translator.log_path.name + ".1")
    translator.log_path.rename(rotated)
    time.sleep(0.5)
    translator.sighup()
    wait_for(lambda: translator.log_path.exists(), what="the log file to be reopened")
    wait_for(lambda: "SubmitSharesSuccess" in translator.log_text(), timeout=40, what="a share")
    translator.stop()
    stdout = _stdout_records(translator)
    files = _file_records(rotated.read_text(encoding="utf-8"), translator.log_text())
    _assert_same_records(files, stdout)


def test_log_moved_without_sighup_is_recreated(
    translator: TranslatorProcess,
    miners_factory: Callable[[str, dict[str, str]], MinerProcess],
) -> None:
    miners_factory(translator.url, {"alice.rig1": "2T"})
    wait_for(lambda: "SubmitSharesSuccess" in translator.log_text(), timeout=40, what="a share")
    rotated = translator.log_path.with_name(translator.log_path.name + ".1")
    translator.log_path.rename(rotated)
    wait_for(lambda: translator.log_path.exists(), timeout=40, what="a new log file")
    translator.stop()
    files = _file_records(rotated.read_text("utf-8"), translator.log_text())
    _assert_same_records(files, _stdout_records(translator))


def test_copytruncate_rotation_keeps_writing_at_the_start(
    translator_factory: Callable[..., TranslatorProcess],
    miners_factory: Callable[[str, dict[str, str]], MinerProcess],
) -> None:
    translator = translator_factory(job_interval=60.0, enable_vardiff=False)
    miners = miners_factory(translator.url, {"alice.rig1": "2T"})
    wait_for(lambda: "SubmitSharesSuccess" in translator.log_text(), timeout=40, what="a share")
    # logrotate's copytruncate, done while the proxy is quiet (copy-then-truncate is never
    # atomic: lines written between the two steps are lost, with the real proxy too)
    miners.stop_worker("alice.rig1")
    wait_for(lambda: "Sending CloseChannel message" in translator.log_text(), what="the disconnect")
    time.sleep(0.3)
    rotated = translator.log_path.with_name(translator.log_path.name + ".1")
    shutil.copyfile(translator.log_path, rotated)
    with open(translator.log_path, "r+b") as handle:
        handle.truncate(0)
    miners.start_worker("alice.rig1")
    wait_for(lambda: "SubmitSharesSuccess" in translator.log_text(), timeout=40, what="a share")
    translator.stop()
    data = translator.log_path.read_bytes()
    assert b"\x00" not in data  # O_APPEND: no hole where the old content was
    assert data.startswith(b"20")
    _assert_same_records(
        _file_records(rotated.read_text("utf-8"), data.decode()), _stdout_records(translator)
    )


def test_restart_appends_and_miners_reconnect(
    translator: TranslatorProcess,
    miners_factory: Callable[[str, dict[str, str]], MinerProcess],
) -> None:
    miners = miners_factory(translator.url, {"alice.rig1": "2T"})
    wait_for(lambda: "SubmitSharesSuccess" in translator.log_text(), timeout=40, what="a share")
    before = translator.log_text()
    translator.restart()
    wait_for(
        lambda: (
            miners.status()["alice.rig1"]["connects"] >= 2
            and any(c["shares_acknowledged"] >= 1 for c in translator.channels())
        ),
        timeout=45,
        what="the miner to reconnect and mine again",
    )
    after = translator.log_text()
    assert after.startswith(before)
    assert after.count("INFO translator_sv2: Starting Translator Proxy...") == 2
    # a fresh process numbers channels from 1 again, as the real one does
    assert translator.channels()[0]["user_identity"] == "sri_user.miner1"


def test_monitoring_counters_agree_with_the_log(
    translator: TranslatorProcess,
    miners_factory: Callable[[str, dict[str, str]], MinerProcess],
) -> None:
    miners = miners_factory(translator.url, {"alice.rig1": "2T", "bob.rig2": "1T"})
    wait_for(
        lambda: (
            len(translator.channels()) == 2
            and all(c["shares_acknowledged"] >= 3 for c in translator.channels())
        ),
        timeout=45,
        what="three acknowledged shares per channel",
    )
    for worker in ("alice.rig1", "bob.rig2"):
        miners.set_hashrate(worker, "1")
    # a consistent snapshot: the counters did not move while the log was read
    snapshot: list[tuple[dict[int, dict[str, Any]], str]] = []

    def quiet() -> bool:
        before = {c["channel_id"]: c for c in translator.channels()}
        text = translator.log_text()
        snapshot[:] = [(before, text)]
        return before == {c["channel_id"]: c for c in translator.channels()}

    time.sleep(0.5)
    wait_for(quiet, what="the miners to go quiet")
    channels, text = snapshot[0]
    for cid, channel in channels.items():
        successes = re.findall(
            rf"SubmitSharesSuccess\(channel_id={cid}, last_sequence_number=\d+, "
            r"new_submits_accepted_count=(\d+), new_shares_sum=(\d+)\)",
            text,
        )
        forwarded = re.findall(rf"forwarding it to upstream \| channel_id: {cid},", text)
        assert channel["shares_acknowledged"] == len(successes) == int(successes[-1][0])
        assert channel["shares_submitted"] == len(forwarded)
        assert channel["acknowledged_work_sum"] == sum(int(s[1]) for s in successes)
        assert channel["best_diff"] > 0
    clients = {c["sv1_username"]: c for c in translator.sv1_clients()}
    assert set(clients) == {"alice.rig1", "bob.rig2"}
    assert clients["alice.rig1"]["sv1_worker_name"] == "rig1"
    with urllib.request.urlopen(f"{translator.monitoring_url}/metrics", timeout=5) as resp:  # noqa: S310
        metrics = resp.read().decode()
    assert "sv1_clients_total 2" in metrics
    assert (
        'sv2_server_shares_accepted_total{channel_id="1",user_identity="sri_user.miner1"}'
        in metrics
    )


def test_hashrate_units() -> None:
    from simnet.miners.miner import parse_hashrate

    assert parse_hashrate("1T") == 1e12
    assert parse_hashrate("500G") == 5e11
    assert parse_hashrate("2.5e12") == 2.5e12
    assert parse_hashrate("100 GH/s") == 1e11


def test_miner_control_api_adds_and_stops_workers(
    translator: TranslatorProcess,
    miners_factory: Callable[[str, dict[str, str]], MinerProcess],
) -> None:
    miners = miners_factory(translator.url, {})
    miners.add("frank.rig7", "2T")
    wait_for(lambda: miners.status()["frank.rig7"]["accepted"] >= 1, timeout=40, what="a share")
    assert [c["sv1_username"] for c in translator.sv1_clients()] == ["frank.rig7"]
    miners.stop_worker("frank.rig7")
    wait_for(lambda: translator.sv1_clients() == [], what="the worker to disconnect")
    assert miners.status()["frank.rig7"]["running"] is False


def test_configure_first_like_the_sri_miner(
    translator_factory: Callable[..., TranslatorProcess],
) -> None:
    translator = translator_factory(job_interval=60.0, enable_vardiff=False)
    raw = RawMiner(translator.port)
    try:
        reply = raw.reply_to(raw.send("mining.configure", [[], {}]))
        assert reply["result"]["version-rolling.mask"] == "00000000"
        raw.handshake("gina.rig1")
    finally:
        raw.close()
    text = translator.log_text()
    order = [
        "Downstream 1 registered successfully",
        "Processing 1 queued Sv1 messages for downstream 1",
        "Received mining.configure from Sv1 downstream",
        "Negotiated version_rolling_mask is None",
        "Received mining.subscribe from Sv1 downstream",
        'Authorize { id: 13, name: "gina.rig1", password: "x" }',
    ]
    positions = [text.index(line) for line in order]
    assert positions == sorted(positions)


def test_mining_stack_fixture_maps_workers_to_channels(
    mining_stack: Callable[..., tuple[TranslatorProcess, MinerProcess]],
) -> None:
    translator, miners = mining_stack({"ivy.rig1": "2T", "jon.rig2": "2T"}, rust_log="info")
    by_channel = {c["channel_id"]: c for c in translator.channels()}
    users = {c["sv1_username"]: by_channel[c["channel_id"]] for c in translator.sv1_clients()}
    assert set(users) == {"ivy.rig1", "jon.rig2"}
    assert all(u["user_identity"].startswith("sri_user.miner") for u in users.values())
    assert set(miners.status()) == {"ivy.rig1", "jon.rig2"}
