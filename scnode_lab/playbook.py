"""Running `ansible-playbook` against the default lab exactly as `make lab` does, and reading
its recap.

`make lab` runs `$(BIN)/ansible-playbook playbooks/site.yml` from the repository root with
`ANSIBLE_CONFIG=<repo>/ansible.cfg` (whose default inventory is `inventories/lab/hosts.yml`) and
the virtualenv's bin first on PATH; `site_argv()` is that command line, `run()` runs it (or any
other playbook of the repo) the same way, capturing the output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SITE = "playbooks/site.yml"
LAB_INVENTORY = REPO / "inventories" / "lab" / "hosts.yml"

_RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


@dataclass(frozen=True)
class HostRecap:
    ok: int
    changed: int
    unreachable: int
    failed: int


def parse_recap(stdout: str) -> dict[str, HostRecap]:
    """The PLAY RECAP lines of an ansible-playbook run: host → counters."""
    recap_at = stdout.rfind("PLAY RECAP")
    text = stdout[recap_at:] if recap_at >= 0 else stdout
    return {
        m["host"]: HostRecap(
            int(m["ok"]), int(m["changed"]), int(m["unreachable"]), int(m["failed"])
        )
        for m in _RECAP.finditer(text)
    }


@dataclass
class PlaybookRun:
    """One finished ansible-playbook run."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    recap: dict[str, HostRecap] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and all(
            r.failed == 0 and r.unreachable == 0 for r in self.recap.values()
        )

    @property
    def changed(self) -> dict[str, int]:
        return {host: r.changed for host, r in self.recap.items()}

    def tail(self, chars: int = 6000) -> str:
        return self.stdout[-chars:] + (
            "\n--- stderr ---\n" + self.stderr[-2000:] if self.stderr else ""
        )


def bin_dir() -> Path:
    """The directory of the running interpreter's scripts (the project virtualenv's bin)."""
    return Path(sys.executable).parent


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment `make` gives ansible-playbook (plus no colours, for parsing)."""
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["PATH"] = f"{bin_dir()}:{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def site_argv(*extra: str, playbook: str = SITE) -> list[str]:
    """`make lab`'s converge command line (plus `extra` arguments)."""
    return [str(bin_dir() / "ansible-playbook"), playbook, *extra]


def run(
    *extra: str,
    playbook: str = SITE,
    timeout: float = 1800,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> PlaybookRun:
    """Run a playbook of the repo as `make lab` does; with `log`, also keep its output there."""
    argv = site_argv(*extra, playbook=playbook)
    started = time.monotonic()
    if log is None:
        proc = subprocess.run(
            argv,
            cwd=REPO,
            env=environment(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        stdout, stderr, returncode = proc.stdout, proc.stderr, proc.returncode
    else:
        # written as it runs, so a long converge can be followed with `tail -f`
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            proc = subprocess.run(
                argv,
                cwd=REPO,
                env=environment(env),
                stdout=out,
                stderr=subprocess.PIPE,
                text=True,
                timeout=timeout,
                check=False,
            )
            if proc.stderr:
                out.write("\n--- stderr ---\n" + proc.stderr)
        stdout, stderr, returncode = log.read_text(), proc.stderr, proc.returncode
    seconds = time.monotonic() - started
    return PlaybookRun(
        argv=argv,
        returncode=returncode,
        stdout=stdout,
        stderr=stderr,
        seconds=seconds,
        recap=parse_recap(stdout),
    )


def snapshot_apps(dest: Path, ref: str = "HEAD") -> Path:
    """The committed apps/ sources (`git archive`), so work in progress in the tree cannot
    change the wheel between two runs of one test session."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "apps"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "apps"
