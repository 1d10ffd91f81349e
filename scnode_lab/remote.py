"""Talking to the services of a lab's hosts from this machine, over the lab's SSH.

The node's APIs listen on 127.0.0.1 of their host and the hosts forbid SSH forwarding, so an
HTTP call is `curl` run on the host (`Remote.http`). Host names may be given as the lab host
(`mining`) or the inventory name (`mining.lab`).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from scnode_lab.lab import Lab
from scnode_lab.process import LabError

T = TypeVar("T")


class RemoteError(LabError):
    """A command on a lab host failed."""


class Remote:
    """SSH and HTTP-through-SSH to one lab's hosts."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    @staticmethod
    def host_name(host: str) -> str:
        return host.split(".", 1)[0]

    def ssh(
        self,
        host: str,
        command: str | Sequence[str],
        *,
        check: bool = True,
        timeout: float = 120,
        input_bytes: bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` (a shell string or an argv) as root on `host`; output captured."""
        argv = self.lab.ssh(self.host_name(host), command)
        if input_bytes is not None:
            raw = subprocess.run(
                argv, input=input_bytes, capture_output=True, timeout=timeout, check=False
            )
            proc = subprocess.CompletedProcess(
                argv,
                raw.returncode,
                raw.stdout.decode(errors="replace"),
                raw.stderr.decode(errors="replace"),
            )
        else:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
        if check and proc.returncode != 0:
            shown = command if isinstance(command, str) else shlex.join(command)
            raise RemoteError(
                f"{host}: `{shown[:200]}` exited {proc.returncode}: "
                f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        return proc

    def on(self, host: str, command: str | Sequence[str], timeout: float = 120) -> str:
        """Run `command` on `host` and return its stdout (raises when it fails)."""
        return self.ssh(host, command, timeout=timeout).stdout

    def http(
        self,
        host: str,
        url: str,
        key: str | None = None,
        method: str = "GET",
        body: Any = None,
        timeout: float = 20,
    ) -> tuple[int, Any]:
        """An HTTP call made by curl on `host`: (status, JSON body or text or None).
        Status 0: no answer (connection refused, timed out)."""
        args = ["curl", "-s", "-X", method, "-w", "\\n%{http_code}", "--max-time", str(timeout)]
        if key:
            # the key travels in the remote shell's argv only; never printed
            args += ["-H", f"Authorization: Bearer {key}"]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
        out = self.ssh(host, shlex.join([*args, url]) + "; true", timeout=timeout + 30).stdout
        text, _, code = out.rpartition("\n")
        try:
            parsed: Any = json.loads(text) if text.strip() else None
        except ValueError:
            parsed = text
        return int(code or 0), parsed

    def token(self, host: str, name: str) -> str:
        """An API key the roles keep for the operator in /etc/scnode/keys/<name>.token."""
        return self.on(host, f"cat /etc/scnode/keys/{shlex.quote(name)}.token").strip()


def wait_for(what: str, check: Callable[[], T | None], timeout: float, every: float = 2.0) -> T:
    """Poll `check` until it returns something truthy; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
