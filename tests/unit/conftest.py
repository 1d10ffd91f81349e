"""Fixtures of the collection's unit tests (modules and module_utils).

Runs under plain pytest from the repository root and under ``ansible-test units`` in a synced
copy of the collection. Plain pytest finds ``ansible_collections.satoshiware.scnode`` through
the ``collections/`` link that ``make`` creates; ansible-test provides the path itself.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

_COLLECTIONS_LINK = Path(__file__).resolve().parents[2] / "collections"
if (_COLLECTIONS_LINK / "ansible_collections").is_dir() and str(_COLLECTIONS_LINK) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS_LINK))

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_transcript(name: str) -> dict[str, Any]:
    """Load one recorded transcript, e.g. ``bitcoind-v30/073_err_wrong_password``."""
    data: dict[str, Any] = json.loads((FIXTURES / (name + ".json")).read_text())
    return data


@dataclass
class RecordedRequest:
    """What the replay server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class RpcReplay:
    """A local HTTP server answering each POST with the next recorded transcript."""

    url: str
    transcripts: list[dict[str, Any]] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)

    def queue(self, *names: str) -> None:
        self.transcripts.extend(load_transcript(name) for name in names)


def _answer(transcript: dict[str, Any], request_id: Any) -> bytes:
    """The recorded raw body, with the request's id in place of the recorded one."""
    raw: str = transcript["response_raw"]
    response = transcript["response"]
    if isinstance(response, dict) and "id" in response:
        recorded = '"id":' + json.dumps(response["id"], separators=(",", ":"))
        assert raw.count(recorded) == 1, "cannot locate the id in " + raw
        raw = raw.replace(recorded, '"id":' + json.dumps(request_id))
    return raw.encode()


@pytest.fixture
def rpc_replay() -> Iterator[RpcReplay]:
    """Serve recorded Bitcoin Core/AZCoin answers on 127.0.0.1 (a free port per test)."""

    replay = RpcReplay(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            replay.requests.append(RecordedRequest(self.path, dict(self.headers.items()), body))
            transcript = replay.transcripts.pop(0)
            answer = _answer(transcript, body.get("id"))
            self.send_response(transcript["http_status"])
            for name, value in transcript["response_headers"].items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output clean."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    replay.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield replay
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
