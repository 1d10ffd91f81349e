"""The lab's SSH key and the SSH command line that reaches a host through the lab namespace."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from scnode_lab.network import lab_netns
from scnode_lab.process import LabError, run


def ensure_key(key: Path) -> Path:
    """Generate the lab's ed25519 key once (per cache); returns the public key's path."""
    public = key.with_name(key.name + ".pub")
    if not key.exists() or not public.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.parent.chmod(0o700)
        key.unlink(missing_ok=True)
        public.unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "scnode-lab", "-f", str(key)])
    return public


def proxy_command(lab: str) -> str:
    """How SSH reaches the lab's private addresses: a socat started in the lab namespace."""
    return f"ip netns exec {lab_netns(lab)} socat - TCP:%h:%p"


def common_options(lab: str) -> list[str]:
    """SSH options shared by the tool, the inventory and the tests. Host keys are new on every
    start, so they are neither checked nor remembered."""
    return [
        "-o", f"ProxyCommand={proxy_command(lab)}",
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR",
    ]  # fmt: skip


def ssh_argv(lab: str, key: Path, ip: str, command: Sequence[str] | str) -> list[str]:
    """`ssh` as root to a lab host, running `command` (a shell string or an argv)."""
    remote = command if isinstance(command, str) else shlex.join(command)
    return [
        "ssh",
        "-i", str(key),
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=5",
        *common_options(lab),
        f"root@{ip}",
        remote,
    ]  # fmt: skip


def wait_ready(lab: str, key: Path, ip: str, timeout: float) -> float:
    """Poll until key-auth SSH runs a command; returns the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            proc = subprocess.run(
                ssh_argv(lab, key, ip, "true"),
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except subprocess.TimeoutExpired:
            last = "ssh timed out"
            continue
        if proc.returncode == 0:
            _wait_booted(lab, key, ip, deadline)
            return time.monotonic() - started
        last = proc.stderr.strip()
        time.sleep(0.2)
    raise LabError(f"SSH to {ip} not ready after {timeout:.0f} s: {last}")


def _wait_booted(lab: str, key: Path, ip: str, deadline: float) -> None:
    """Wait until systemd has finished booting, so a converge never races the boot."""
    remaining = max(1.0, deadline - time.monotonic())
    proc = run(
        ssh_argv(lab, key, ip, "systemctl is-system-running --wait"),
        check=False,
        timeout=remaining + 10,
    )
    state = proc.stdout.strip()
    if state not in ("running", "degraded"):
        raise LabError(f"{ip} did not finish booting: systemd says {state or proc.stderr!r}")
