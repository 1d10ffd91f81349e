"""scnode_core.lightning_rpc against a unix socket speaking lightningd's framing."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from scnode_core.lightning_rpc import (
    LightningClient,
    LightningRpcError,
    LightningUnavailableError,
)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="lnrpc-", dir="/tmp"))  # short: unix socket path limit
    yield path
    shutil.rmtree(path, ignore_errors=True)


def serve_once(path: Path, answers: list[dict[str, object]]) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def run() -> None:
        for answer in answers:
            conn, _ = server.accept()
            request = json.loads(conn.recv(65536))
            conn.sendall(json.dumps({"jsonrpc": "2.0", "id": request["id"], **answer}).encode())
            conn.sendall(b"\n\n")
            conn.close()
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_results_keep_msat_integers_and_errors_keep_flat_fields(socket_dir: Path) -> None:
    path = socket_dir / "lightning-rpc"
    thread = serve_once(
        path,
        [
            {"result": {"to_us_msat": 5_000_000_000}},
            {"error": {"code": 210, "message": "Ran out of routes", "attempts": [1]}},
        ],
    )
    client = LightningClient(path)
    assert asyncio.run(client.call("listpeerchannels")) == {"to_us_msat": 5_000_000_000}
    with pytest.raises(LightningRpcError) as failed:
        asyncio.run(client.call("pay", bolt11="lnbcrt1"))
    assert (failed.value.code, failed.value.fields) == (210, {"attempts": [1]})
    thread.join(5)


def test_a_missing_socket_is_unavailable_not_an_error_answer(socket_dir: Path) -> None:
    with pytest.raises(LightningUnavailableError):
        asyncio.run(LightningClient(socket_dir / "lightning-rpc").call("getinfo"))
