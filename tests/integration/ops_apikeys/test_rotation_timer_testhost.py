"""The api_key_rotation role's main entry point on a real Debian 13 test host: the timer is
enabled and scheduled, the service it starts runs the configured command, a second converge
changes nothing, and disabling it stops the timer."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from scnode_lab.pytest_plugin import LabHandle, missing_requirements

REPO = Path(__file__).resolve().parents[3]
BIN = REPO / ".venv" / "bin"
UNIT = "scnode-api-key-rotation"

pytestmark = [
    pytest.mark.testhosts,
    pytest.mark.timeout(900),
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]

PLAY = """
- name: Schedule the API key rotation
  hosts: {host}
  gather_facts: false
  roles:
    - role: satoshiware.scnode.api_key_rotation
"""


def converge(lab: LabHandle, tmp_path: Path, **variables: Any) -> dict[str, Any]:
    """Converge the role on node-a; return the play's stats for node-a."""
    play = tmp_path / "play.yml"
    host = lab.hosts["node-a"].fqdn
    play.write_text(PLAY.format(host=host))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="json",
        PATH=f"{BIN}:{os.environ['PATH']}",
    )
    done = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(lab.inventory),
            str(play),
            "-e",
            json.dumps(variables),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    stats: dict[str, Any] = json.loads(done.stdout)["stats"][host]
    return stats


def systemctl(lab: LabHandle, *args: str) -> str:
    return lab.ssh("node-a", ["systemctl", *args], check=False).stdout.strip()


def test_timer_is_installed_scheduled_and_runs_the_playbook_command(
    scnode_lab: LabHandle, tmp_path: Path
) -> None:
    # the "playbook" is a command that leaves a mark, so the service's run can be seen
    variables = {
        "api_key_rotation_ansible_playbook": "/usr/bin/tee",
        "api_key_rotation_inventory": "/root/rotation-ran",
        "api_key_rotation_playbook": "/root/rotation-playbook-arg",
        "api_key_rotation_on_calendar": "Sun *-*-* 03:00:00",
    }
    first = converge(scnode_lab, tmp_path, **variables)
    assert first["changed"] >= 3 and first["failures"] == 0
    assert systemctl(scnode_lab, "is-enabled", f"{UNIT}.timer") == "enabled"
    assert systemctl(scnode_lab, "is-active", f"{UNIT}.timer") == "active"
    shown = systemctl(scnode_lab, "show", f"{UNIT}.timer", "-p", "TimersCalendar")
    assert "Sun *-*-* 03:00:00" in shown
    assert systemctl(scnode_lab, "show", f"{UNIT}.timer", "-p", "NextElapseUSecRealtime") != (
        "NextElapseUSecRealtime="
    )
    verify = scnode_lab.ssh(
        "node-a", f"systemd-analyze verify /etc/systemd/system/{UNIT}.timer", check=False
    )
    assert verify.returncode == 0, verify.stderr

    # what the timer starts: `tee -i <inventory> <playbook>` (stdin empty) creates both files
    # (outside /tmp: the unit has PrivateTmp)
    scnode_lab.ssh("node-a", f"systemctl start {UNIT}.service")
    assert systemctl(scnode_lab, "show", f"{UNIT}.service", "-p", "Result") == "Result=success"
    marks = scnode_lab.ssh(
        "node-a", "ls /root/rotation-ran /root/rotation-playbook-arg", check=False
    )
    assert marks.returncode == 0, marks.stderr

    assert converge(scnode_lab, tmp_path, **variables)["changed"] == 0

    off = converge(scnode_lab, tmp_path, api_key_rotation_timer_enabled=False, **variables)
    assert off["changed"] >= 1
    assert systemctl(scnode_lab, "is-enabled", f"{UNIT}.timer") == "disabled"
    assert systemctl(scnode_lab, "is-active", f"{UNIT}.timer") == "inactive"
