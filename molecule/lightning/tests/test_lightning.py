"""testinfra checks of the lightning scenario: lightningd on lightning-a, bitcoind and the
simulated SC Cluster hub on chain-a.

Behaviour an operator, the Lightning API or the SC Cluster would notice: lightningd runs as its
own user under a sandboxed forking unit, follows the chain host's bitcoind with the password
taken from chain_node (in no file another user can read), the config carries the role's values,
the RPC socket serves its group only, the second database copy is a live SQLite database, cl-zmq
publishes on its loopback endpoints, exactly one channel exists with the hub after two converges,
a dry run says it would open a channel only when none exists, and a tampered
archive is refused with nothing installed.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import testinfra
import yaml

testinfra_hosts = ["lightning-a"]

SCENARIO = Path(__file__).resolve().parents[1]
PROJECT = SCENARIO.parents[1]
CONF = "/etc/lightning/config"
RPC = "/var/lib/lightning/bitcoin/lightning-rpc"
HUB_CLI = "/opt/simnet-hub/bin/lightning-cli --conf=/etc/simnet-hub.conf"


def _ephemeral(name: str) -> dict[str, Any]:
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / name
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


@pytest.fixture(scope="module")
def chain() -> Any:
    inventory = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
    return testinfra.get_host(f"ansible://chain-a?ansible_inventory={inventory}")


def _cli(host: Any, *args: str) -> Any:
    out = host.run("lightning-cli " + " ".join(shlex.quote(a) for a in args))
    assert out.rc == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def _hub(chain: Any, *args: str) -> Any:
    out = chain.run(HUB_CLI + " " + " ".join(shlex.quote(a) for a in args))
    assert out.rc == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def _main_pid(host: Any) -> int:
    return int(host.run("systemctl show -p MainPID --value lightningd").stdout.strip())


def _channels(host: Any) -> list[dict[str, Any]]:
    peer = _ephemeral("lightning_hub.yml")["lightning_test_hub_id"]
    channels: list[dict[str, Any]] = _cli(host, "listpeerchannels", peer)["channels"]
    return channels


def _normal_channel(host: Any, chain: Any) -> dict[str, Any]:
    """The channel, mined to lock-in (3 confirmations off regtest) if it is not there yet."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        [channel] = _channels(host)
        if channel["state"] == "CHANNELD_NORMAL" and channel["peer_connected"]:
            return channel
        miner = chain.run("bitcoin-cli -rpcwallet=wallet getnewaddress").stdout.strip()
        chain.run(f"bitcoin-cli generatetoaddress 1 {miner}")
        time.sleep(1.5)
    raise AssertionError(f"channel not normal: {_channels(host)}")


def _converge(
    extra: dict[str, Any], *options: str, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Re-run converge.yml as an operator would (JSON output)."""
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    env = dict(os.environ)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(PROJECT / "collections")
    env["ANSIBLE_CONFIG"] = str(PROJECT / "ansible.cfg")
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.json"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    argv = ["ansible-playbook", "--inventory", str(ephemeral / "inventory")]
    argv += [str(SCENARIO / "converge.yml"), "--extra-vars", json.dumps(extra), *options]
    if check:
        argv.append("--check")
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)


def _results(run: subprocess.CompletedProcess[str], task: str) -> list[dict[str, Any]]:
    """lightning-a's results of every task with that name (role prefix dropped), JSON callback."""
    report = json.loads(run.stdout)
    return [
        task_run["hosts"]["lightning-a"]
        for play in report["plays"]
        for task_run in play["tasks"]
        if task_run["task"]["name"].split(" : ")[-1] == task and "lightning-a" in task_run["hosts"]
    ]


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


# ------------------------------------------------------------------ the daemon


def test_lightningd_runs_as_its_own_user_from_a_forking_unit(host: Any) -> None:
    service = host.service("lightningd")
    assert service.is_running
    assert service.is_enabled
    props = dict(
        line.split("=", 1)
        for line in host.run(
            "systemctl show lightningd -p Type -p PIDFile -p User -p Restart"
        ).stdout.splitlines()
    )
    assert props["Type"] == "forking"
    assert props["PIDFile"] == "/run/lightning/lightningd.pid"
    pid = _main_pid(host)
    assert int(host.file("/run/lightning/lightningd.pid").content_string) == pid
    assert host.run(f"ps -o user= -p {pid}").stdout.strip() == "lightning"
    cmdline = host.file(f"/proc/{pid}/cmdline").content_string.split("\0")
    assert f"--conf={CONF}" in cmdline
    assert "--daemon" in cmdline
    # the release the role installed is what runs (the simnet launcher exports it)
    environ = host.run(f"tr '\\0' '\\n' < /proc/{pid}/environ").stdout.splitlines()
    assert "SIMNET_RELEASE_VERSION=26.06.2" in environ
    assert host.file("/opt/lightning/current").linked_to == "/opt/lightning/26.06.2"


def test_unit_is_sandboxed(host: Any) -> None:
    """Read from systemd (these options are enforced in the test containers, TESTHOSTS.md)."""
    props = dict(
        line.split("=", 1)
        for line in host.run(
            "systemctl show lightningd -p ProtectSystem -p PrivateTmp -p NoNewPrivileges "
            "-p ProtectHome -p MemoryDenyWriteExecute -p ReadWritePaths"
        ).stdout.splitlines()
    )
    assert props["ProtectSystem"] == "strict"
    assert props["PrivateTmp"] == "yes"
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectHome"] == "yes"
    assert props["MemoryDenyWriteExecute"] == "yes"
    assert set(props["ReadWritePaths"].split()) == {
        "/var/lib/lightning",
        "/var/log/lightning",
        "/var/backups/lightning",
    }
    # The sandbox really holds: the daemon cannot write its config nor its plugin.
    pid = _main_pid(host)
    for path in ("/etc/lightning/probe", "/opt/lightning/reckless/cl-zmq/probe"):
        probe = host.run(f"nsenter -t {pid} -m -- sh -c 'touch {path}' 2>&1")
        assert probe.rc != 0, path


def test_follows_the_chain_hosts_bitcoind(host: Any, chain: Any) -> None:
    info = _cli(host, "getinfo")
    assert info["network"] == "bitcoin"
    deadline = time.monotonic() + 30
    tip = int(chain.run("bitcoin-cli getblockcount").stdout)
    while _cli(host, "getinfo")["blockheight"] < tip and time.monotonic() < deadline:
        time.sleep(1)
    assert _cli(host, "getinfo")["blockheight"] >= tip
    assert "warning_bitcoind_sync" not in _cli(host, "getinfo")


def test_bitcoind_password_comes_from_chain_node_and_only_the_group_reads_it(
    host: Any, chain: Any
) -> None:
    env = chain.file("/etc/bitcoin/chain-api.env").content_string
    password = next(
        line.split("=", 1)[1]
        for line in env.splitlines()
        if line.startswith("SCNODE_CHAIN_API_RPC_PASSWORD=")
    )
    secret = host.file("/etc/lightning/bitcoin-rpc.conf")
    assert (secret.user, secret.group, secret.mode) == ("root", "lightning", 0o640)
    assert f"bitcoin-rpcpassword={password}\n" in secret.content_string
    conf = host.file(CONF)
    assert (conf.user, conf.group, conf.mode) == ("root", "lightning", 0o640)
    assert password not in conf.content_string
    assert host.file("/etc/lightning").mode == 0o750
    # not on any command line either
    assert password not in host.run("ps -eo args").stdout
    assert host.run("runuser -u nobody -- cat /etc/lightning/bitcoin-rpc.conf").rc != 0


def test_config_carries_the_roles_values(host: Any) -> None:
    text = host.file(CONF).content_string
    lines = set(text.splitlines())
    expected = {
        "network=bitcoin",
        "lightning-dir=/var/lib/lightning",
        "alias=lightning-a",
        "bind-addr=0.0.0.0:9735",
        "announce-addr=10.10.3.12:9735",
        "log-file=/var/log/lightning/lightningd.log",
        "rpc-file-mode=0660",
        "wallet=sqlite3:///var/lib/lightning/bitcoin/lightningd.sqlite3:"
        "/var/backups/lightning/lightningd.sqlite3",
        "bitcoin-rpcconnect=10.10.3.11",
        "bitcoin-rpcport=8332",
        "bitcoin-rpcuser=satoshi",
        "include /etc/lightning/bitcoin-rpc.conf",
        "include /opt/lightning/reckless/bitcoin-reckless.conf",
    }
    assert expected <= lines
    info = _cli(host, "getinfo")
    assert info["alias"] == "lightning-a"
    assert {"type": "ipv4", "address": "10.10.3.12", "port": 9735} in info["address"]
    # lightningd logs to its file, not the journal, and accepted every option
    log = host.file("/var/log/lightning/lightningd.log").content_string
    assert "Server started with public key" in log
    assert "Unknown option" not in log
    rotate = host.file("/etc/logrotate.d/lightningd").content_string
    assert "copytruncate" in rotate and "rotate 14" in rotate and "daily" in rotate
    assert host.run("logrotate -d /etc/logrotate.d/lightningd").rc == 0


def test_rpc_socket_serves_its_group_only(host: Any) -> None:
    sock = host.file(RPC)
    assert sock.is_socket
    assert (sock.user, sock.group, sock.mode) == ("lightning", "lightning", 0o660)
    assert host.file("/var/lib/lightning/bitcoin/hsm_secret").mode == 0o400
    outsider = host.run(
        "runuser -u nobody -- /opt/lightning/current/bin/lightning-cli "
        "--lightning-dir=/var/lib/lightning --network=bitcoin getinfo"
    )
    assert outsider.rc != 0


def test_database_has_a_live_second_copy(host: Any) -> None:
    main = host.file("/var/lib/lightning/bitcoin/lightningd.sqlite3")
    copy = host.file("/var/backups/lightning/lightningd.sqlite3")
    assert main.exists and copy.exists
    assert copy.user == "lightning"
    check = host.run("sqlite3 /var/backups/lightning/lightningd.sqlite3 'PRAGMA integrity_check'")
    assert check.stdout.strip() == "ok"
    assert host.file("/var/backups/lightning").mode == 0o750


# ------------------------------------------------------------------ cl-zmq


def test_clzmq_is_installed_like_reckless_and_loaded(host: Any) -> None:
    pins = _ephemeral("lightning_mirror.yml")
    commit = pins["lightning_test_clzmq_commit"]
    conf = host.file("/opt/lightning/reckless/bitcoin-reckless.conf").content_string
    assert "plugin=/opt/lightning/reckless/cl-zmq/cl-zmq.py" in conf.splitlines()
    source = host.file(f"/opt/lightning/reckless/cl-zmq/source/{commit}/cl-zmq/cl-zmq.py")
    assert source.exists and source.user == "root"
    metadata = host.file("/opt/lightning/reckless/cl-zmq/.metadata").content_string
    assert commit in metadata and pins["lightning_test_clzmq_sha256"] in metadata
    # the plugin's virtualenv sees Debian's pyzmq
    venv = host.run("/opt/lightning/reckless/cl-zmq/.venv/bin/python3 -c 'import zmq'")
    assert venv.rc == 0, venv.stderr
    plugins = [p["name"] for p in _cli(host, "plugin", "list")["plugins"]]
    assert "/opt/lightning/reckless/cl-zmq/cl-zmq.py" in plugins


def test_clzmq_endpoints_listen_on_loopback_only(host: Any) -> None:
    listeners = host.run("ss -ltnH").stdout
    for port in range(28440, 28448):
        addresses = [w for w in listeners.split() if w.endswith(f":{port}")]
        assert addresses == [f"127.0.0.1:{port}"], (port, listeners)
    for line in host.file(CONF).content_string.splitlines():
        if line.startswith("zmq-pub-") and not line.split("=")[0].endswith("-hwm"):
            assert line.split("=", 1)[1].startswith("tcp://127.0.0.1:")


SUBSCRIBE = """
import sys, zmq
ctx = zmq.Context()
sock = ctx.socket(zmq.SUB)
sock.setsockopt(zmq.SUBSCRIBE, b"")
sock.setsockopt(zmq.RCVTIMEO, 30000)
sock.connect("tcp://127.0.0.1:28446")
open("/root/zmq-ready", "w").close()
frames = sock.recv_multipart()
sys.stdout.buffer.write(b"%d\\n" % len(frames) + frames[0])
"""


def test_clzmq_publishes_a_payment(host: Any, chain: Any) -> None:
    """Pay an invoice of the outside world through the hub; sendpay_success arrives on 28446."""
    _normal_channel(host, chain)
    invoice = json.loads(
        chain.run(
            "curl -sf -X POST -d '{\"amount_msat\": 12345000}' "
            "http://127.0.0.1:9800/v1/outside/invoice"
        ).stdout
    )
    host.run("rm -f /root/zmq-ready /root/zmq-out")
    host.run_expect(
        [0],
        "nohup python3 -c %s > /root/zmq-out 2>/root/zmq-err < /dev/null &",
        SUBSCRIBE,
    )
    deadline = time.monotonic() + 10
    while not host.file("/root/zmq-ready").exists and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # let the SUB socket's subscription reach the publisher
    paid = _cli(host, "pay", invoice["bolt11"])
    assert paid["status"] == "complete"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = host.file("/root/zmq-out").content_string
        if out:
            break
        time.sleep(0.3)
    count, _, frame = out.partition("\n")
    assert count == "1"  # cl-zmq: one frame, no sequence counter
    topic, _, body = frame.partition("\0")
    assert topic == "sendpay_success"
    assert json.loads(body)["sendpay_success"]["payment_hash"] == invoice["payment_hash"]


# ------------------------------------------------------------------ the channel


def test_exactly_one_channel_with_the_hub_after_two_converges(host: Any, chain: Any) -> None:
    """molecule's converge opened it; its idempotence step (a second converge) opened none."""
    hub_id = _ephemeral("lightning_hub.yml")["lightning_test_hub_id"]
    [channel] = _channels(host)
    assert channel["peer_id"] == hub_id
    assert channel["total_msat"] == 2_000_000_000
    # (the stand-in ignores fundchannel's announce: a real lightningd would show private: true)
    node_id = _cli(host, "getinfo")["id"]
    assert len(_hub(chain, "listpeerchannels", node_id)["channels"]) == 1


def test_dry_run_says_it_would_open_only_when_no_channel_exists(host: Any) -> None:
    same = _converge({}, "--tags", "channel", check=True)
    assert same.returncode == 0, same.stdout[-3000:]
    said = _results(same, "Say that a dry run would open the channel")
    assert said and all(r.get("skipped") for r in said)
    other_peer = "02" + "11" * 32  # a node the lightning host has no channel with
    other = _converge({"lightning_cluster_peer_id": other_peer}, "--tags", "channel", check=True)
    assert other.returncode == 0, other.stdout[-3000:]
    said = _results(other, "Say that a dry run would open the channel")
    assert said
    assert all(r.get("changed") for r in said)
    assert other_peer in said[0]["msg"]
    assert len(_channels(host)) == 1  # and nothing was opened


def test_tampered_archive_is_refused_and_nothing_installed(host: Any) -> None:
    pins = _ephemeral("lightning_mirror.yml")
    host.run("rm -rf /var/cache/scnode/lightning/26.06.1 /opt/lightning/26.06.1")
    run = _converge(
        {
            "lightning_test_vars": {
                "version": "26.06.1",
                "download_base_url": pins["lightning_test_tampered_url"]
                + "/tampered/ElementsProject/lightning/releases/download/v{version}",
                "sha256sums_sha256": pins["lightning_test_sums"]["26.06.1"],
            }
        }
    )
    assert run.returncode != 0
    out = _failure_messages(run)
    assert "refusing to install Core Lightning 26.06.1" in out, out
    assert (
        "clightning-v26.06.1-Ubuntu-24.04-amd64.tar.xz does not match its SHA256SUMS-v26.06.1 entry"
        in out
    ), out
    assert not host.file("/opt/lightning/26.06.1").exists
    assert not host.file(
        "/var/cache/scnode/lightning/26.06.1/clightning-v26.06.1-Ubuntu-24.04-amd64.tar.xz"
    ).exists
    assert host.file("/opt/lightning/current").linked_to == "/opt/lightning/26.06.2"
    assert host.service("lightningd").is_running


# ------------------------------------------------------------------ the prune guard


def test_prune_guard_runs_on_its_timer_as_lightning(host: Any, chain: Any) -> None:
    """bitcoind here is pruned manually (prune=1) and far below the budget: nothing to prune."""
    assert host.service("lightning-prune-guard.timer").is_running
    assert host.service("lightning-prune-guard.timer").is_enabled
    run = host.run("systemctl start lightning-prune-guard.service")
    assert run.rc == 0, host.run("journalctl -u lightning-prune-guard -n 20 --no-pager").stdout
    status = json.loads(host.file("/var/lib/lightning/prune-guard.json").content_string)
    assert status["lightningd_height"] == _cli(host, "getinfo")["blockheight"]
    assert status["bitcoind_blocks"] == int(chain.run("bitcoin-cli getblockcount").stdout)
    assert status["alert"] is None
    assert status["prune_to"] is None
    user = host.run("systemctl show -p User --value lightning-prune-guard.service").stdout
    assert user.strip() == "lightning"
