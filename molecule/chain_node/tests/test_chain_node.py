"""testinfra checks of the chain_node scenario: bitcoind (pruned) and azcoind on one host.

Behaviour a node's operator or the chain API would notice: the daemons run as their own users,
RPC answers the credentials the role generated (and refuses others) on 127.0.0.1 only, the
P2P port of the listening node is open in the firewall, no clear password in the config, the
wallet exists. Then the release path: a wrong SHA256SUMS and a tampered archive are refused
with nothing installed, and an upgrade 30.1 → 30.2 and a rollback take one variable each
(the side runs re-run converge.yml with other versions, as an operator would).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

SCENARIO = Path(__file__).resolve().parents[1]
PROJECT = SCENARIO.parents[1]

CHAINS: dict[str, dict[str, Any]] = {
    "bitcoin": {"daemon": "bitcoind", "rpc": 8332, "p2p": 8333, "listen": False},
    "azcoin": {"daemon": "azcoind", "rpc": 19332, "p2p": 19333, "listen": True},
}


def _env_file(host: Any, chain: str) -> dict[str, str]:
    text = host.file(f"/etc/{chain}/chain-api.env").content_string
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")
    return {key: value for key, value in pairs}


def _rpc(
    host: Any, chain: str, method: str, params: list[Any] | None = None, password: str | None = None
) -> tuple[int, Any]:
    """(HTTP status, parsed body or None) of one JSON-RPC call made on the host itself."""
    env = _env_file(host, chain)
    secret = env["SCNODE_CHAIN_API_RPC_PASSWORD"] if password is None else password
    body = json.dumps({"jsonrpc": "1.0", "id": "t", "method": method, "params": params or []})
    url = env["SCNODE_CHAIN_API_RPC_URL"]
    command = (
        f"curl -s -o /tmp/rpc.out -w '%{{http_code}}' -u {shlex.quote('satoshi:' + secret)} "
        f"--data-binary {shlex.quote(body)} {url}/; echo; cat /tmp/rpc.out"
    )
    out = host.run(command).stdout
    status, _, payload = out.partition("\n")
    return int(status), (json.loads(payload) if payload.strip() else None)


def _main_pid(host: Any, daemon: str) -> int:
    return int(host.run(f"systemctl show -p MainPID --value {daemon}").stdout.strip())


def _running_version(host: Any, daemon: str) -> str:
    """The release the running daemon came from (the simnet launcher exports it)."""
    pid = _main_pid(host, daemon)
    environ = host.run(f"tr '\\0' '\\n' < /proc/{pid}/environ").stdout
    for line in environ.splitlines():
        if line.startswith("SIMNET_RELEASE_VERSION="):
            return str(line.split("=", 1)[1])
    raise AssertionError(f"{daemon} (pid {pid}) shows no release version")


@pytest.mark.parametrize("chain", CHAINS)
def test_daemon_runs_as_its_own_user_with_conf_and_datadir(host: Any, chain: str) -> None:
    daemon = CHAINS[chain]["daemon"]
    service = host.service(daemon)
    assert service.is_running
    assert service.is_enabled
    pid = _main_pid(host, daemon)
    assert host.run(f"ps -o user= -p {pid}").stdout.strip() == chain
    cmdline = host.file(f"/proc/{pid}/cmdline").content_string.split("\0")
    assert f"-conf=/etc/{chain}/{chain}.conf" in cmdline
    assert f"-datadir=/var/lib/{chain}" in cmdline
    data = host.file(f"/var/lib/{chain}")
    assert (data.user, data.group, data.mode) == (chain, chain, 0o750)


@pytest.mark.parametrize("chain", CHAINS)
def test_unit_is_sandboxed(host: Any, chain: str) -> None:
    """Read from systemd (these options are enforced in the test containers, TESTHOSTS.md)."""
    daemon = CHAINS[chain]["daemon"]
    props = dict(
        line.split("=", 1)
        for line in host.run(
            f"systemctl show {daemon} -p ProtectSystem -p PrivateTmp -p NoNewPrivileges "
            "-p ProtectHome -p MemoryDenyWriteExecute -p Restart -p TimeoutStopUSec "
            "-p ReadWritePaths -p User"
        ).stdout.splitlines()
    )
    assert props["ProtectSystem"] == "strict"
    assert props["PrivateTmp"] == "yes"
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectHome"] == "yes"
    assert props["MemoryDenyWriteExecute"] == "yes"
    assert props["Restart"] == "on-failure"
    assert props["TimeoutStopUSec"] == "10min"
    assert props["ReadWritePaths"] == f"/var/lib/{chain}"
    # The sandbox really holds: the daemon's user cannot write its own config.
    probe = host.run(
        f"nsenter -t {_main_pid(host, daemon)} -m -- sh -c 'touch /etc/{chain}/probe' 2>&1"
    )
    assert probe.rc != 0


@pytest.mark.parametrize("chain", CHAINS)
def test_rpc_answers_the_generated_credentials_and_refuses_others(host: Any, chain: str) -> None:
    status, body = _rpc(host, chain, "getblockchaininfo")
    assert status == 200
    assert body["error"] is None
    assert body["result"]["chain"] == "main"
    assert body["result"]["pruned"] is (chain == "bitcoin")
    status, body = _rpc(host, chain, "getblockchaininfo", password="not-the-password")  # noqa: S106 - deliberately wrong
    assert status == 401
    assert body is None


@pytest.mark.parametrize("chain", CHAINS)
def test_rpc_and_zmq_listen_on_localhost_only(host: Any, chain: str) -> None:
    rpc_port = CHAINS[chain]["rpc"]
    listeners = host.run(f"ss -ltnH '( sport = :{rpc_port} )'").stdout.split()
    addresses = [word for word in listeners if word.endswith(f":{rpc_port}")]
    assert addresses == [f"127.0.0.1:{rpc_port}"]
    zmq = host.file(f"/etc/{chain}/{chain}.conf").content_string
    for line in zmq.splitlines():
        if line.startswith("zmqpub"):
            assert "tcp://127.0.0.1:" in line


def _connects_from_lab(host: Any, port: int) -> bool:
    """Whether a TCP connection from the lab bridge (another machine's view) succeeds."""
    address = host.ansible.get_variables()["ansible_host"]
    netns = f"scnl-molecule-{os.environ.get('MOLECULE_SCENARIO_NAME', 'chain_node')}"
    probe = (
        "import socket,sys\n"
        "try:\n"
        f"    socket.create_connection(({address!r}, {port}), timeout=3).close()\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    return subprocess.run(["ip", "netns", "exec", netns, "python3", "-c", probe]).returncode == 0


@pytest.mark.parametrize("chain", CHAINS)
def test_p2p_port_open_only_for_the_listening_node(host: Any, chain: str) -> None:
    p2p = CHAINS[chain]["p2p"]
    ruleset = host.run("nft list ruleset").stdout
    opened = f"tcp dport {p2p} accept" in ruleset
    assert opened is CHAINS[chain]["listen"]
    if CHAINS[chain]["listen"]:
        assert _connects_from_lab(host, p2p)
    # RPC is never reachable from the network.
    assert not _connects_from_lab(host, CHAINS[chain]["rpc"])


@pytest.mark.parametrize("chain", CHAINS)
def test_config_has_rpcauth_and_no_clear_password(host: Any, chain: str) -> None:
    conf = host.file(f"/etc/{chain}/{chain}.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", chain, 0o640)
    text = conf.content_string
    password = _env_file(host, chain)["SCNODE_CHAIN_API_RPC_PASSWORD"]
    assert [line for line in text.splitlines() if line.startswith("rpcauth=satoshi:")]
    assert "rpcpassword" not in text
    assert password not in text
    env = host.file(f"/etc/{chain}/chain-api.env")
    assert (env.user, env.group, env.mode) == ("root", chain, 0o640)


@pytest.mark.parametrize("chain", CHAINS)
def test_descriptor_wallet_is_loaded(host: Any, chain: str) -> None:
    status, body = _rpc(host, chain, "listwallets")
    assert status == 200
    assert "wallet" in body["result"]


# ------------------------------------------------------------------ release path (side runs)


def _mirror() -> dict[str, Any]:
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "chain_node_mirror.yml"
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def _converge(bitcoin: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Re-run converge.yml with these bitcoin overrides, as an operator would (JSON output)."""
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
            json.dumps({"chain_node_test_bitcoin": bitcoin}),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def _failure_messages(run: subprocess.CompletedProcess[str]) -> str:
    """The messages of the failed tasks of a run, whitespace-normalised."""
    report = json.loads(run.stdout)
    messages = [
        result.get("msg", "")
        for play in report["plays"]
        for task in play["tasks"]
        for result in task["hosts"].values()
        if result.get("failed")
    ]
    return " ".join(" ".join(messages).split())


@pytest.fixture
def without_bitcoin_30_2(host: Any) -> Iterator[None]:
    """The host as converged (30.1), with nothing of 30.2 downloaded or unpacked."""
    assert host.file("/opt/bitcoin/current").linked_to == "/opt/bitcoin/30.1"
    host.run("rm -rf /var/cache/scnode/chain_node/bitcoin/30.2 /opt/bitcoin/30.2")
    yield


def _nothing_of_30_2(host: Any) -> None:
    assert not host.file("/opt/bitcoin/30.2").exists
    assert not host.file(
        "/var/cache/scnode/chain_node/bitcoin/30.2/bitcoin-30.2-x86_64-linux-gnu.tar.gz"
    ).exists
    assert host.file("/opt/bitcoin/current").linked_to == "/opt/bitcoin/30.1"
    assert host.service("bitcoind").is_running
    assert _running_version(host, "bitcoind") == "30.1"


@pytest.mark.usefixtures("without_bitcoin_30_2")
def test_sha256sums_not_matching_the_pin_is_refused(host: Any) -> None:
    mirror = _mirror()
    wrong_pin = mirror["chain_node_test_sums"]["bitcoin-30.1"]
    run = _converge({"version": "30.2", "sha256sums_sha256": wrong_pin})
    assert run.returncode != 0
    out = _failure_messages(run)
    assert "refusing to install bitcoin 30.2" in out
    assert "does not match the pinned hash chain_node_sha256sums_sha256" in out, out
    assert not host.file("/var/cache/scnode/chain_node/bitcoin/30.2/SHA256SUMS").exists
    _nothing_of_30_2(host)


@pytest.mark.usefixtures("without_bitcoin_30_2")
def test_tampered_archive_is_refused(host: Any) -> None:
    mirror = _mirror()
    run = _converge(
        {
            "version": "30.2",
            "download_base_url": mirror["chain_node_test_tampered_url"]
            + "/tampered/bin/bitcoin-core-{version}",
            "sha256sums_sha256": mirror["chain_node_test_sums"]["bitcoin-30.2"],
        }
    )
    assert run.returncode != 0
    out = _failure_messages(run)
    assert "refusing to install bitcoin 30.2" in out
    assert "bitcoin-30.2-x86_64-linux-gnu.tar.gz does not match its SHA256SUMS entry" in out, out
    _nothing_of_30_2(host)


def test_upgrade_then_rollback_is_one_variable(host: Any) -> None:
    mirror = _mirror()
    assert _running_version(host, "bitcoind") == "30.1"
    before = _rpc(host, "bitcoin", "getblockchaininfo")[1]["result"]["blocks"]

    upgrade = _converge(
        {"version": "30.2", "sha256sums_sha256": mirror["chain_node_test_sums"]["bitcoin-30.2"]}
    )
    assert upgrade.returncode == 0, upgrade.stdout[-3000:]
    assert host.file("/opt/bitcoin/current").linked_to == "/opt/bitcoin/30.2"
    assert _running_version(host, "bitcoind") == "30.2"
    assert _running_version(host, "azcoind") == "0.2.2"  # the other instance was left alone
    status, body = _rpc(host, "bitcoin", "getblockchaininfo")
    assert status == 200
    assert body["result"]["blocks"] >= before  # same data directory, same chain
    assert "wallet" in _rpc(host, "bitcoin", "listwallets")[1]["result"]

    rollback = _converge({"version": "30.1"})
    assert rollback.returncode == 0, rollback.stdout[-3000:]
    assert host.file("/opt/bitcoin/current").linked_to == "/opt/bitcoin/30.1"
    assert host.file("/opt/bitcoin/30.2/bin/bitcoind").exists  # kept for the next upgrade
    assert _running_version(host, "bitcoind") == "30.1"
    assert _rpc(host, "bitcoin", "getblockchaininfo")[0] == 200
    assert "wallet" in _rpc(host, "bitcoin", "listwallets")[1]["result"]
