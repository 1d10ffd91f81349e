"""testinfra checks of the stratum_translator scenario: the btc and azc translators on one host.

Behaviour a node's operator, a member's miner or the stratum stats API would notice: each
translator runs as `stratum` from the verified release with the rendered TOML at
`RUST_LOG=debug`, its Stratum V1 port answers from the LAN (and the monitoring API only on
loopback), a miner mining on :3333 shows up in the log file by worker name in the real
translator_sv2 v1.5.0 format, the log is readable by the `stratum-logs` group and survives a
copytruncate rotation. Then the release path: a tampered archive is refused with nothing
installed, and a config change restarts that translator only (side runs re-run converge.yml,
as an operator would).

The translator behind the release mirror is the simnet stand-in (SIMULATION): its Stratum V2
upstream is simulated inside the process, so the configured pool address (the lab's cluster
address) is only checked in the config, never contacted.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from simnet.translator.logparse import RECORD_START, parse_records

SCENARIO = Path(__file__).resolve().parents[1]
PROJECT = SCENARIO.parents[1]

INSTANCES: dict[str, dict[str, Any]] = {
    "btc": {"coin": "bitcoin", "downstream": 3333, "upstream": 3334, "monitoring": 9093},
    "azc": {"coin": "azcoin", "downstream": 3336, "upstream": 3337, "monitoring": 9096},
}


def _unit(instance: str) -> str:
    return f"stratum-translator-{instance}"


def _main_pid(host: Any, instance: str) -> int:
    return int(host.run(f"systemctl show -p MainPID --value {_unit(instance)}").stdout.strip())


def _environ(host: Any, pid: int) -> dict[str, str]:
    text = host.run(f"tr '\\0' '\\n' < /proc/{pid}/environ").stdout
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _config(host: Any, instance: str) -> dict[str, Any]:
    coin = INSTANCES[instance]["coin"]
    return tomllib.loads(host.file(f"/etc/stratum/stratum-{coin}.toml").content_string)


def _lab_run(probe: str) -> subprocess.CompletedProcess[str]:
    """Run a Python probe in the lab's namespace: another machine on the LAN."""
    netns = f"scnl-molecule-{os.environ.get('MOLECULE_SCENARIO_NAME', 'stratum_translator')}"
    return subprocess.run(
        ["ip", "netns", "exec", netns, "python3", "-c", probe],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _address(host: Any) -> str:
    return str(host.ansible.get_variables()["ansible_host"])


def _mine(host: Any, instance: str, worker: str, seconds: int) -> dict[str, Any]:
    """Run the simnet miner bundled in the release on the host for a while; its final counters."""
    port = INSTANCES[instance]["downstream"]
    run = host.run(
        f"cd / && PYTHONPATH=/opt/stratum/{instance}/current/share/simnet timeout {seconds + 20} "
        f"python3 -m simnet.miners --url stratum+tcp://127.0.0.1:{port} "
        f"--miner {worker}=1T --duration {seconds}"
    )
    assert run.rc == 0, run.stderr
    line = next(line for line in run.stdout.splitlines() if line.startswith(f"{worker}: "))
    result: dict[str, Any] = ast.literal_eval(line.split(": ", 1)[1])
    return result


@pytest.mark.parametrize("instance", INSTANCES)
def test_translator_runs_as_stratum_with_its_config_at_debug(host: Any, instance: str) -> None:
    service = host.service(_unit(instance))
    assert service.is_running
    assert service.is_enabled
    pid = _main_pid(host, instance)
    assert host.run(f"ps -o user= -p {pid}").stdout.strip() == "stratum"
    cmdline = host.file(f"/proc/{pid}/cmdline").content_string.split("\0")
    assert f"/etc/stratum/stratum-{INSTANCES[instance]['coin']}.toml" in cmdline
    environ = _environ(host, pid)
    assert environ["RUST_LOG"] == "debug"
    assert environ["SIMNET_RELEASE_VERSION"] == "v0.5.0"  # the verified release, via current
    current = host.file(f"/opt/stratum/{instance}/current")
    assert current.linked_to == f"/opt/stratum/{instance}/v0.5.0"


@pytest.mark.parametrize("instance", INSTANCES)
def test_unit_is_sandboxed(host: Any, instance: str) -> None:
    """Read from systemd (these options are enforced in the test containers, TESTHOSTS.md)."""
    props = dict(
        line.split("=", 1)
        for line in host.run(
            f"systemctl show {_unit(instance)} -p ProtectSystem -p PrivateTmp -p NoNewPrivileges "
            "-p ProtectHome -p MemoryDenyWriteExecute -p Restart -p ReadWritePaths -p User "
            "-p SystemCallFilter -p CapabilityBoundingSet -p StandardOutput -p UnitFileState"
        ).stdout.splitlines()
    )
    assert props["User"] == "stratum"
    assert props["ProtectSystem"] == "strict"
    assert props["PrivateTmp"] == "yes"
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectHome"] == "yes"
    assert props["MemoryDenyWriteExecute"] == "yes"
    assert props["Restart"] == "always"
    assert props["ReadWritePaths"] == "/var/log/stratum"
    assert props["SystemCallFilter"]  # common's baseline (@system-service) is rendered too
    assert props["CapabilityBoundingSet"] == ""
    # The log is the file, not a second copy in the journal.
    assert props["StandardOutput"] == "null"
    assert props["UnitFileState"] == "enabled"
    # The sandbox really holds: inside the unit's mount namespace the config is read-only.
    probe = host.run(
        f"nsenter -t {_main_pid(host, instance)} -m -- sh -c 'touch /etc/stratum/probe' 2>&1"
    )
    assert probe.rc != 0


@pytest.mark.parametrize("instance", INSTANCES)
def test_config_has_upstreams_values_and_the_node_identity(host: Any, instance: str) -> None:
    ports = INSTANCES[instance]
    conf_file = host.file(f"/etc/stratum/stratum-{ports['coin']}.toml")
    assert (conf_file.user, conf_file.group, conf_file.mode) == ("root", "stratum", 0o640)
    config = _config(host, instance)
    assert config["downstream_address"] == "0.0.0.0"  # noqa: S104 - miners connect from the LAN
    assert config["downstream_port"] == ports["downstream"]
    assert config["downstream_extranonce2_size"] == 4
    assert config["aggregate_channels"] is False
    assert (config["min_supported_version"], config["max_supported_version"]) == (2, 2)
    assert config["monitoring_address"] == f"127.0.0.1:{ports['monitoring']}"
    assert config["log_file"] == f"/var/log/stratum/{instance}.log"
    assert config["downstream_difficulty_config"] == {
        "min_individual_miner_hashrate": 100e9,
        "shares_per_minute": 6.0,
        "enable_vardiff": True,
        "job_keepalive_interval_secs": 60,
    }
    cluster = _address(host).rsplit(".", 1)[0] + ".2"
    assert config["upstreams"] == [
        {
            "address": cluster,
            "port": ports["upstream"],
            "authority_pubkey": "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72",
            "user_identity": f"{instance}-LAB0001",
        }
    ]


@pytest.mark.parametrize("instance", INSTANCES)
def test_stratum_port_answers_the_lan_and_monitoring_stays_local(host: Any, instance: str) -> None:
    ports = INSTANCES[instance]
    listening = host.run(f"ss -ltnH '( sport = :{ports['downstream']} )'").stdout.split()
    assert f"0.0.0.0:{ports['downstream']}" in listening
    monitoring = host.run(f"ss -ltnH '( sport = :{ports['monitoring']} )'").stdout.split()
    assert [w for w in monitoring if w.endswith(f":{ports['monitoring']}")] == [
        f"127.0.0.1:{ports['monitoring']}"
    ]
    health = host.run(f"curl -sf http://127.0.0.1:{ports['monitoring']}/api/v1/health")
    assert json.loads(health.stdout)["status"] == "ok"
    # The opening is restricted to the LAN's networks.
    ruleset = host.run("nft list ruleset").stdout
    assert (
        "ip saddr { 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 } "
        f"tcp dport {ports['downstream']} accept"
    ) in ruleset
    # A miner on the LAN (the lab bridge) subscribes over Stratum V1.
    subscribe = (
        "import json,socket\n"
        f"s=socket.create_connection(({_address(host)!r}, {ports['downstream']}), timeout=5)\n"
        's.sendall(b\'{"id": 1, "method": "mining.subscribe", "params": ["probe/1.0"]}\\n\')\n'
        "print(s.makefile().readline())\n"
    )
    run = _lab_run(subscribe)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["id"] == 1 and answer["error"] is None
    assert answer["result"][2] == 4  # extranonce2 size as configured
    # The monitoring API is not reachable from the LAN.
    connect = (
        "import socket,sys\n"
        "try:\n"
        f"    socket.create_connection(({_address(host)!r}, {ports['monitoring']}), timeout=3)\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    assert _lab_run(connect).returncode == 1


def test_a_miner_on_3333_shows_up_in_the_log_by_worker_name(host: Any) -> None:
    log = "/var/log/stratum/btc.log"
    before = host.file(log).size
    counters = _mine(host, "btc", "alice.rig1", 10)
    assert counters["connects"] >= 1
    assert counters["accepted"] > 0
    text = host.run(f"tail -c +{before + 1} {log}").stdout
    lines = [line for line in text.splitlines() if line]
    assert len(lines) > 20
    assert RECORD_START.match(lines[0]), lines[0]
    messages = [record.message for record in parse_records(text)]
    assert any('name: "alice.rig1"' in m and "mining.authorize" in m for m in messages)
    assert any(m.startswith("Received mining.submit from SV1 downstream") for m in messages)
    assert any("SubmitSharesSuccess" in m for m in messages)
    assert any("user_identity: btc-LAB0001.miner" in m for m in messages)


def test_log_is_readable_by_the_log_group_only(host: Any) -> None:
    log = host.file("/var/log/stratum/btc.log")
    assert (log.user, log.group, log.mode) == ("stratum", "stratum-logs", 0o640)
    directory = host.file("/var/log/stratum")
    assert (directory.user, directory.group, directory.mode) == ("stratum", "stratum-logs", 0o2750)
    gid = host.run("getent group stratum-logs | cut -d: -f3").stdout.strip()
    reader = host.run(f"setpriv --reuid=65534 --regid=65534 --groups={gid} head -c 30 {log.path}")
    assert reader.rc == 0 and reader.stdout
    stranger = host.run(f"setpriv --reuid=65534 --regid=65534 --clear-groups head -c 30 {log.path}")
    assert stranger.rc != 0


def test_copytruncate_rotation_keeps_the_translator_writing(host: Any) -> None:
    conf = host.file("/etc/logrotate.d/stratum-translator-azc").content_string
    for directive in ("size 100M", "rotate 14", "copytruncate", "delaycompress", "compress"):
        assert f"    {directive}\n" in conf
    log = "/var/log/stratum/azc.log"
    _mine(host, "azc", "bob.rig2", 3)
    inode = host.file(log).inode
    rotate = host.run("logrotate -f /etc/logrotate.d/stratum-translator-azc")
    assert rotate.rc == 0, rotate.stderr
    copy = host.file(f"{log}.1")  # delaycompress: the newest copy stays plain text
    assert copy.exists and 'name: "bob.rig2"' in copy.content_string
    assert host.file(log).inode == inode  # truncated in place, the translator's file is the same
    _mine(host, "azc", "carol.rig3", 3)
    head = host.run(f"head -c 200 {log}").stdout
    assert RECORD_START.match(head.splitlines()[0]), head  # no NUL hole: writes start at 0
    assert 'name: "carol.rig3"' in host.file(log).content_string
    assert host.service(_unit("azc")).is_running


def test_size_check_timer_rotates_a_log_past_100_mb(host: Any) -> None:
    timer = host.service("stratum-translator-btc-logrotate.timer")
    assert timer.is_enabled and timer.is_running
    assert host.run(
        "systemctl show -p TimersCalendar --value stratum-translator-btc-logrotate.timer"
    ).stdout.strip()
    log = "/var/log/stratum/btc.log"
    host.run(f"rm -f {log}.1")
    small = host.run("systemctl start stratum-translator-btc-logrotate.service")
    assert small.rc == 0, small.stderr
    assert not host.file(f"{log}.1").exists  # under the size limit: left alone
    # Past the limit (the filler goes through the same O_APPEND as the translator's writes).
    filler = host.run(f"head -c 105000000 /dev/zero | tr '\\0' x >> {log}")
    assert filler.rc == 0, filler.stderr
    try:
        big = host.run("systemctl start stratum-translator-btc-logrotate.service")
        assert big.rc == 0, big.stderr
        assert host.file(f"{log}.1").size >= 105_000_000
        assert host.file(log).size < 1_000_000
        assert host.service(_unit("btc")).is_running
    finally:
        host.run(f"rm -f {log}.1")


# ------------------------------------------------------------------ side runs of converge.yml


def _converge(btc: dict[str, Any], tags: str) -> subprocess.CompletedProcess[str]:
    """Re-run converge.yml with these btc overrides, as an operator would (JSON output).

    Only the concerns under test run (`--tags`, as a technician would), to keep the side runs short.
    """
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    env = dict(os.environ)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(PROJECT / "collections")
    env["ANSIBLE_CONFIG"] = str(PROJECT / "ansible.cfg")
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.json"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    return subprocess.run(
        [
            "ansible-playbook",
            "--inventory",
            str(ephemeral / "inventory"),
            str(SCENARIO / "converge.yml"),
            "--extra-vars",
            json.dumps({"stratum_translator_test_btc": btc}),
            "--tags",
            tags,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def _failure_messages(run: subprocess.CompletedProcess[str]) -> str:
    report = json.loads(run.stdout)
    messages = [
        result.get("msg", "")
        for play in report["plays"]
        for task in play["tasks"]
        for result in task["hosts"].values()
        if result.get("failed")
    ]
    return " ".join(" ".join(messages).split())


def _mirror() -> dict[str, Any]:
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "stratum_translator_mirror.yml"
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def test_tampered_archive_is_refused_and_nothing_installed(host: Any) -> None:
    mirror = _mirror()
    pid = _main_pid(host, "btc")
    run = _converge(
        {
            "version": "v0.4.0",
            "download_base_url": mirror["stratum_translator_test_tampered_url"],
            "archive_sha256": mirror["stratum_translator_test_pins"]["v0.4.0"],
        },
        tags="install,service",
    )
    assert run.returncode != 0
    out = _failure_messages(run)
    assert "refusing to install sv2-apps v0.4.0" in out, out
    assert "does not match the pinned hash stratum_translator_archive_sha256" in out, out
    assert not host.file(
        "/var/cache/scnode/stratum_translator/v0.4.0/miner-apps-x86_64-unknown-linux-musl.tar.gz"
    ).exists
    assert not host.file("/opt/stratum/btc/v0.4.0").exists
    assert host.file("/opt/stratum/btc/current").linked_to == "/opt/stratum/btc/v0.5.0"
    assert _main_pid(host, "btc") == pid  # untouched, still serving miners


def test_config_change_restarts_that_translator_once(host: Any) -> None:
    pids = {instance: _main_pid(host, instance) for instance in INSTANCES}
    current = _config(host, "btc")["downstream_difficulty_config"]["shares_per_minute"]
    wanted = 12.0 if current != 12.0 else 18.0
    try:
        changed = _converge({"shares_per_minute": wanted}, tags="config,service")
        assert changed.returncode == 0, changed.stdout[-3000:]
        assert _config(host, "btc")["downstream_difficulty_config"]["shares_per_minute"] == wanted
        assert _main_pid(host, "btc") != pids["btc"]
        assert _main_pid(host, "azc") == pids["azc"]
        report = json.loads(changed.stdout)
        restarts = [
            task
            for play in report["plays"]
            for task in play["tasks"]
            if "Restart the translator once" in task["task"]["name"]
            and any(result.get("changed") for result in task["hosts"].values())
        ]
        assert len(restarts) == 1
    finally:
        back = _converge({}, tags="config,service")
    assert back.returncode == 0, back.stdout[-3000:]
    assert _config(host, "btc")["downstream_difficulty_config"]["shares_per_minute"] == 6.0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not host.socket("tcp://0.0.0.0:3333").is_listening:
        time.sleep(0.5)
    assert host.socket("tcp://0.0.0.0:3333").is_listening
