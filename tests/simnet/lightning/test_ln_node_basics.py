"""The stand-in as a process: socket framing, pyln-client, hsm_secret, options, cl-zmq binding."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable

import pytest
from bitcoin.wallet import CKey
from pyln.client import RpcError

from simnet.pytest_lightning import LightningNodeHandle, wait_for


def _read_responses(sock: socket.socket, count: int) -> list[bytes]:
    buf = b""
    while buf.count(b"\n\n") < count:
        chunk = sock.recv(65536)
        assert chunk, "socket closed early"
        buf += chunk
    return [part + b"\n\n" for part in buf.split(b"\n\n") if part]


def test_socket_framing_like_lightningd(
    start_lightning_node: Callable[..., LightningNodeHandle],
) -> None:
    node = start_lightning_node("framing")
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(str(node.rpc_path))
        # three requests back to back, no separator, on one connection
        s.sendall(
            b'{"jsonrpc":"2.0","id":1,"method":"getinfo","params":{}}'
            b'{"jsonrpc":"2.0","id":2,"method":"frobnicate","params":{}}'
            b'{"jsonrpc":"2.0","id":3,"method":"getinfo"}'
        )
        replies = {json.loads(r)["id"]: (r, json.loads(r)) for r in _read_responses(s, 3)}
    assert all(raw.endswith(b"}\n\n") for raw, _ in replies.values())
    assert replies[1][1]["result"]["network"] == "regtest"
    assert replies[2][1]["error"] == {"code": -32601, "message": "Unknown command 'frobnicate'"}
    assert replies[3][1]["error"] == {"code": -32600, "message": "No params"}


def test_pyln_client_works_unchanged(
    start_lightning_node: Callable[..., LightningNodeHandle],
) -> None:
    node = start_lightning_node("pyln")
    info = node.rpc.getinfo()
    assert info["version"] == "v26.06.6" and info["alias"] == "pyln"
    inv = node.rpc.invoice(1000, "l1", "first")
    assert inv["bolt11"].startswith("lnbcrt10n1")
    assert node.rpc.decode(inv["bolt11"])["payee"] == info["id"]
    with pytest.raises(RpcError) as err:
        node.rpc.invoice(1000, "l1", "again")
    assert err.value.error == {"code": 900, "message": "Duplicate label 'l1'"}
    listed = node.rpc.listinvoices("l1")["invoices"]
    assert [i["status"] for i in listed] == ["unpaid"]
    with pytest.raises(RpcError) as err:
        node.rpc.waitanyinvoice(0, 0.2)
    assert err.value.error["code"] == 904


def test_hsm_secret_mode_and_node_id_derivation(
    start_lightning_node: Callable[..., LightningNodeHandle],
) -> None:
    node = start_lightning_node("hsm")
    path = node.network_dir / "hsm_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    secret = path.read_bytes()
    assert len(secret) == 32
    # lightningd's hsmd: HKDF-SHA256(ikm=hsm_secret, salt=u32 0, info="nodeid")
    prk = hmac.new(b"\0\0\0\0", secret, hashlib.sha256).digest()
    key = CKey(hmac.new(prk, b"nodeid\x01", hashlib.sha256).digest(), compressed=True)
    assert node.node_id == bytes(key.pub).hex()


def test_unknown_and_unsimulated_options_are_logged(
    start_lightning_node: Callable[..., LightningNodeHandle],
) -> None:
    node = start_lightning_node("opts", extra=("frobnicate=7", "fee-base=0"))
    log = node.log_text()
    assert "Unknown option frobnicate=7" in log
    assert "Option fee-base=0 accepted, not simulated" in log


def test_clzmq_with_an_unset_endpoint_binds_nothing(
    start_lightning_node: Callable[..., LightningNodeHandle],
) -> None:
    node = start_lightning_node("zmqbug", zmq_unset=("zmq-pub-channel-opened",))
    assert "KeyError: 'zmq-pub-channel-opened'" in node.log_text()
    for endpoint in node.zmq_endpoints.values():
        port = int(endpoint.rsplit(":", 1)[1])
        with socket.socket() as s:  # the port is free: the plugin bound nothing
            s.bind(("127.0.0.1", port))


def test_zmq_options_without_the_plugin_stop_startup(
    start_lightning_node: Callable[..., LightningNodeHandle],
) -> None:
    with pytest.raises(RuntimeError, match="zmq-pub-connect: unrecognized option"):
        start_lightning_node("noplugin", zmq=False, extra=("zmq-pub-connect=tcp://127.0.0.1:1",))


def test_stop_rpc_shuts_down_cleanly(
    start_lightning_node: Callable[..., LightningNodeHandle],
) -> None:
    node = start_lightning_node("stopper")
    pid_file = node.lightning_dir / "lightningd-regtest.pid"
    assert pid_file.read_text().strip() == str(node.proc.pid if node.proc else "")
    assert node.rpc.stop() == "Shutdown complete"
    assert node.proc is not None and node.proc.wait(10) == 0
    assert not node.rpc_path.exists() and not pid_file.exists()


def _cli(node: LightningNodeHandle, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "simnet.lightning.cli",
            f"--lightning-dir={node.lightning_dir}",
            "--regtest",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_lightning_cli_like_the_real_one(
    start_lightning_node: Callable[..., LightningNodeHandle],
) -> None:
    node = start_lightning_node("cli")
    info = _cli(node, "getinfo")
    assert info.returncode == 0 and json.loads(info.stdout)["id"] == node.node_id
    assert info.stdout.startswith('{\n   "id"')  # lightning-cli indents by 3
    made = _cli(node, "invoice", "amount_msat=1000", "label=cli-1", "description=from the cli")
    assert made.returncode == 0 and json.loads(made.stdout)["bolt11"].startswith("lnbcrt10n1")
    positional = _cli(node, "-o", "listinvoices", "cli-1")
    assert json.loads(positional.stdout)["invoices"][0]["label"] == "cli-1"
    dup = _cli(node, "-k", "invoice", "amount_msat=1000", "label=cli-1", "description=again")
    assert dup.returncode == 1 and json.loads(dup.stdout)["code"] == 900
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "simnet.lightning.cli",
            f"--lightning-dir={node.base}/nowhere",
            "--regtest",
            "getinfo",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2 and "Connecting to 'lightning-rpc'" in missing.stderr


def test_daemon_mode_for_systemd_type_forking(
    start_lightning_node: Callable[..., LightningNodeHandle],
) -> None:
    node = start_lightning_node("daemon")
    node.stop()
    pid_file = node.base / "run" / "lightningd.pid"
    # the upstream unit's form: `--conf <file>` with a space, --pid-file, --daemon
    started = subprocess.run(
        [
            sys.executable,
            "-m",
            "simnet.lightning",
            "--conf",
            str(node.conf),
            f"--lightning-dir={node.lightning_dir}",
            f"--pid-file={pid_file}",
            "--daemon",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 0
    pid = int(pid_file.read_text())
    try:
        assert node.rpc.getinfo()["alias"] == "daemon"  # the parent left only when RPC was up
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pid_file.exists(), 10, "daemon exit")
