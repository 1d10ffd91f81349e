"""Shared by the roles' validation tests: each inventory host is one case, the role's
`validate` tag runs once for all of them, and each case is accepted or refused with words."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


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
