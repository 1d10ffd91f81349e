"""The release mirror of a lab: `python -m simnet.mirror` built and served on the lab bridge.

`up` builds the mirror tree (SIMULATION archives of the stand-ins under the real release
names, freshly from the work tree's `simnet`, so it always matches the code) into the lab's
state dir and serves it at `http://<subnet .1>:8080` inside the lab namespace only — the lab
hosts download their "releases" from there. `mirror.json` in the state dir holds that URL and
the sha256 of every `SHA256SUMS` in the tree, which the lab inventory pins
(`inventories/lab/group_vars/`). `down` stops the server by its recorded PID.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from scnode_lab import network
from scnode_lab.process import LabError, TrackedProcess, netns_exec, run, spawn_detached

MIRROR_PORT = 8080
MIRROR_DIR = "mirror"
MIRROR_FILE = "mirror.json"
_SUMS_NAME = "SHA256SUMS"


def info(state_dir: Path) -> dict[str, Any] | None:
    """The recorded mirror (url, sums, process) of a lab, or None."""
    try:
        data: dict[str, Any] = json.loads((state_dir / MIRROR_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


def _process(state_dir: Path) -> TrackedProcess | None:
    data = info(state_dir)
    if data is None or "process" not in data:
        return None
    return TrackedProcess.from_json(data["process"])


def ensure(lab: str, state_dir: Path, gateway: IPv4Address, timeout: float = 20) -> str:
    """Serve the mirror of lab `lab` unless it already runs; returns its URL."""
    url = f"http://{gateway}:{MIRROR_PORT}"
    proc = _process(state_dir)
    if proc is not None and proc.alive():
        return url
    root = state_dir / MIRROR_DIR
    if root.exists():
        shutil.rmtree(root)
    run([sys.executable, "-m", "simnet.mirror", "build", "--out", str(root)], timeout=300)
    sums = {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob(_SUMS_NAME))
    }
    ns = network.lab_netns(lab)
    argv = [sys.executable, "-m", "simnet.mirror", "serve", "--root", str(root)]
    argv += ["--host", str(gateway), "--port", str(MIRROR_PORT)]
    proc = spawn_detached(netns_exec(ns, argv), state_dir / "mirror.log")
    record = {"url": url, "sums": sums, "process": proc.to_json()}
    tmp = state_dir / (MIRROR_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.rename(state_dir / MIRROR_FILE)
    probe = f"{url}/{next(iter(sums), '')}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            break
        answered = run(netns_exec(ns, ["curl", "-sf", "-o", "/dev/null", probe]), check=False)
        if answered.returncode == 0:
            return url
        time.sleep(0.2)
    stop(state_dir)
    raise LabError(f"the release mirror did not answer at {url}: see {state_dir}/mirror.log")


def stop(state_dir: Path) -> None:
    """Stop the lab's mirror server (by its recorded PID) and forget it."""
    proc = _process(state_dir)
    if proc is not None:
        proc.stop(5)
    with contextlib.suppress(FileNotFoundError):
        (state_dir / MIRROR_FILE).unlink()
