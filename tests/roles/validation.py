"""Shared by the roles' validation tests: each inventory host is one case, the role's
`validate` tag runs once for all of them, and each case is accepted or refused with words."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def failures_by_host(report: dict[str, Any], hosts: Iterable[str]) -> dict[str, dict[str, Any]]:
    """From ansible-playbook's JSON callback output: per host, whether it failed and why."""
    result: dict[str, dict[str, Any]] = {name: {"failed": False, "msg": ""} for name in hosts}
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, res in task["hosts"].items():
                if res.get("failed"):
                    messages = [res.get("msg", "")]
                    messages += [item.get("msg", "") for item in res.get("results", [])]
                    result[host] = {"failed": True, "msg": " ".join(m for m in messages if m)}
    return result


def assert_outcome(case: str, outcome: dict[str, Any], expected: Iterable[str] | None) -> None:
    """None: the case must pass validation; else it must fail with every expected phrase."""
    if expected is None:
        assert not outcome["failed"], outcome["msg"]
        return
    assert outcome["failed"], f"{case} was accepted"
    message = " ".join(outcome["msg"].split())
    for words in expected:
        assert words in message, message


def run_validate(
    work: Path, playbook: str, cases: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Run `playbook` once with `--tags validate` over one local host per case (its vars)."""
    hosts = {
        name: {
            "ansible_connection": "local",
            "ansible_host": "127.0.0.1",
            "ansible_python_interpreter": sys.executable,
            **host_vars,
        }
        for name, host_vars in cases.items()
    }
    (work / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    (work / "play.yml").write_text(playbook)
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_LOCAL_TEMP=str(work / "tmp"),
        ANSIBLE_FORKS="4",
    )
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventory.yml"]
    run = subprocess.run(
        [*argv, "play.yml", "--tags", "validate"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=work,
        check=False,
    )
    return failures_by_host(json.loads(run.stdout), cases)
