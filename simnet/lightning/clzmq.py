"""The cl-zmq plugin's publisher: one PUB socket bound per endpoint, single-frame messages.

Wire format (fixtures/cln-v26-real/zmq): `<topic> 0x00 <json>` in one frame, the JSON wrapped
in an object named after the notification, plus a duplicate `payload` object while deprecated
APIs are on. Like cl-zmq on lightningd >= v23.08, leaving any of the eight endpoint options
unset makes the plugin's `init` fail with a KeyError: it stays loaded and binds nothing.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from simnet.lightning.options import ZMQ_OPTIONS, ZMQ_TOPICS, Options

DEFAULT_HWM = 1000


def plugin_path(opts: Options) -> str | None:
    """The cl-zmq plugin path among the plugin= options, if it is loaded."""
    names = ("cl-zmq.py", "cl-zmq", "zmq.py", "cl_zmq.py")
    for path in opts.plugins:
        if path.rsplit("/", 1)[-1] in names:
            return path
    # plugin-dir=: lightningd loads every executable in it (and in its subdirectories, by name)
    for directory in opts.multi.get("plugin-dir", []):
        for candidate in ("cl-zmq.py", "cl-zmq/cl-zmq.py"):
            if (Path(directory) / candidate).exists():
                return str(Path(directory) / candidate)
    return None


def check_options(opts: Options) -> None:
    """Like lightningd: zmq-pub-* options are unknown unless the plugin that defines them loads."""
    if plugin_path(opts) is not None:
        return
    for name in opts.values:
        base = name[:-4] if name.endswith("-hwm") else name
        if base in ZMQ_OPTIONS:
            raise SystemExit(f"lightningd: --{name}: unrecognized option (no cl-zmq plugin loaded)")


class ZmqPublisher:
    """Publishes lightningd notifications the way cl-zmq does."""

    def __init__(self, opts: Options, log: Callable[[str, str, str], None]) -> None:
        self.sockets: dict[str, zmq.Socket[bytes]] = {}
        self.topic_endpoint: dict[str, str] = {}
        self.with_payload = opts.flag("allow-deprecated-apis", True)
        self.ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self.plugin = plugin_path(opts)
        if self.plugin is None:
            return
        source = "plugin-" + self.plugin.rsplit("/", 1)[-1]
        missing = [o for o in ZMQ_OPTIONS if opts.get(o) is None]
        if missing:
            # what cl-zmq's init does on current lightningd: options[...] raises KeyError
            log("UNUSUAL", source, "Traceback (most recent call last):")
            log("UNUSUAL", source, f"KeyError: '{missing[0]}'")
            log(
                "UNUSUAL",
                source,
                "cl-zmq init failed: no zmq publish sockets are bound "
                "(simulation of lightningd/plugins#553: set all eight zmq-pub-* options)",
            )
            return
        hwm_by_endpoint: dict[str, int] = {}
        for topic, option in zip(ZMQ_TOPICS, ZMQ_OPTIONS, strict=True):
            endpoint = str(opts.get(option))
            hwm = int(opts.get(option + "-hwm") or DEFAULT_HWM)
            self.topic_endpoint[topic] = endpoint
            hwm_by_endpoint[endpoint] = min(hwm, hwm_by_endpoint.get(endpoint, hwm))
            if not endpoint.startswith(("tcp://", "ipc://", "inproc://", "pgm://", "epgm://")):
                log("UNUSUAL", source, f"Endpoint option {option} doesn't appear to be recognized")
        self.ctx = zmq.Context()
        for endpoint, hwm in hwm_by_endpoint.items():
            sock = self.ctx.socket(zmq.PUB)
            sock.setsockopt(zmq.SNDHWM, hwm)
            sock.setsockopt(zmq.RCVHWM, hwm)
            sock.setsockopt(zmq.LINGER, 100)
            sock.bind(endpoint)
            self.sockets[endpoint] = sock
            log("INFO", source, f"bound PUB socket {endpoint} (hwm {hwm})")

    def publish(self, topic: str, body: dict[str, Any]) -> None:
        """Send one notification if its topic has a bound endpoint."""
        endpoint = self.topic_endpoint.get(topic)
        if endpoint is None or endpoint not in self.sockets:
            return
        wrapped: dict[str, Any] = {topic: body}
        if self.with_payload:
            wrapped["payload"] = body
        # PUB drops when the HWM is reached, like txZMQ's NOBLOCK send
        with contextlib.suppress(zmq.Again):
            self.sockets[endpoint].send(
                topic.encode() + b"\0" + json.dumps(wrapped).encode(), zmq.NOBLOCK
            )

    def close(self) -> None:
        """Close the sockets."""
        for sock in self.sockets.values():
            sock.close()
        if self.ctx is not None:
            self.ctx.term()
