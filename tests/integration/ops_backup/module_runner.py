"""Run a collection module as a playbook does (ansible ad hoc, AnsiballZ) and read its result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def run_module(
    name: str, args: dict[str, Any], *, check: bool = False, diff: bool = False
) -> dict[str, Any]:
    """``satoshiware.scnode.<name>`` on localhost with ``args``; returns the module's result."""
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_NOCOLOR="1",
    )
    env["PATH"] = f"{BIN}:{env['PATH']}"
    argv = [
        str(BIN / "ansible"),
        "localhost",
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-m",
        f"satoshiware.scnode.{name}",
        "-a",
        json.dumps(args),
    ]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    done = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    try:
        report = json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"ansible printed no JSON:\n{done.stdout}\n{done.stderr}") from None
    result: dict[str, Any] = report["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result
