"""scnode_apps on a one-host node: a new apps release restarts the apps of every play.

`playbooks/site.yml` runs the role once per component, all plays on the same host of a
bare-metal node, sharing one `<root>/current` link: only the first play flips it. One test host
of its own lab converges two such plays (the stratum stats API reading a log file made here,
then the exchange on SQLite), then converges again from a copy of the apps whose version strings
say release B. Both apps must run B afterwards (a new MainPID, B's version on their HTTP API, B's
virtualenv in the process's memory maps), and a third converge must change nothing.

The rollback (`make test-long`): release C's exchange does not start. The first play moves
`current` to C, so the exchange's play sees no link flip of its own; it must still roll back
(current to A, the exchange running A again, its release link saying so) and fail the run; the
next converge from A moves the stratum API (left on C) back to A without touching the exchange.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from scnode_lab.inventory import connection_vars
from scnode_lab.pytest_plugin import LabHandle, missing_requirements

pytestmark = [
    pytest.mark.testhosts,
    pytest.mark.timeout(1500),
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
STRATUM_PORT = 8511
EXCHANGE_PORT = 8410
UNITS = {"stratum": "scnode-stratum-api-btc.service", "exchange": "scnode-exchange.service"}
_RECAP = r"^{host}\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)"
PLAYBOOK = """
- name: The stratum stats API (a translator's log made by hand)
  hosts: scnode
  become: true
  pre_tasks:
    - name: The translator's log group and log, as the stratum_translator role leaves them
      ansible.builtin.shell: |
        getent group stratum-logs >/dev/null || groupadd --system stratum-logs
        install -d -m 2750 -g stratum-logs /var/log/stratum
        test -e /var/log/stratum/btc.log ||
          install -m 0640 -g stratum-logs /dev/null /var/log/stratum/btc.log
      changed_when: false
  roles:
    - role: satoshiware.scnode.scnode_apps
      vars:
        scnode_apps_components: [stratum_api]

- name: The exchange (SQLite, no chains)
  hosts: scnode
  become: true
  roles:
    - role: satoshiware.scnode.scnode_apps
      vars:
        scnode_apps_components: [exchange]
"""


def _snapshot(dest: Path, version: str | None = None, broken_exchange: bool = False) -> Path:
    """The committed apps/ sources; with `version`, the two apps say that version; with
    `broken_exchange`, the exchange exits at once."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "HEAD", "apps"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    apps = dest / "apps"
    if version is not None:
        for package in ("scnode_stratum", "scnode_exchange"):
            init = apps / package / "__init__.py"
            text, count = re.subn(
                r'^__version__ = ".*"$', f'__version__ = "{version}"', init.read_text(), flags=re.M
            )
            assert count == 1, init
            init.write_text(text)
    if broken_exchange:
        main = apps / "scnode_exchange" / "__main__.py"
        text = main.read_text().replace(
            "from __future__ import annotations\n",
            "from __future__ import annotations\n\n"
            'raise SystemExit("release C of the one-host test does not start")\n',
            1,
        )
        assert "release C" in text
        main.write_text(text)
    return apps


class Node:
    def __init__(self, lab: LabHandle, work: Path) -> None:
        self.lab = lab
        self.fqdn = lab.hosts["node"].fqdn
        host = {self.fqdn: {"ansible_host": lab.hosts["node"].ip}}
        inventory = {
            "all": {
                "vars": {
                    **connection_vars(lab.name, lab.key),
                    "common_firewall_enabled": False,
                    "scnode_apps_summary": False,
                    "scnode_apps_stratum_apis": [{"instance": "btc", "port": STRATUM_PORT}],
                    "scnode_apps_exchange_enabled": True,
                    "scnode_apps_exchange_port": EXCHANGE_PORT,
                },
                "children": {"scnode": {"hosts": host}},
            }
        }
        self.inventory = work / "hosts.yml"
        self.inventory.write_text(yaml.safe_dump(inventory, sort_keys=False))
        self.playbook = work / "onehost.yml"
        self.playbook.write_text(PLAYBOOK)

    def converge(self, apps: Path, *extra: str) -> tuple[int, int, str, float]:
        """changed, failed, output and wall time of one converge from these apps sources."""
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
        env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / "collections")
        env["PATH"] = f"{BIN}:{env['PATH']}"
        started = time.monotonic()
        run = subprocess.run(
            [
                *(str(BIN / "ansible-playbook"), str(self.playbook), "-i", str(self.inventory)),
                *("-e", f"scnode_apps_source_dir={apps}"),
                *extra,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        seconds = time.monotonic() - started
        output = run.stdout + run.stderr
        match = re.search(_RECAP.format(host=re.escape(self.fqdn)), output, re.M)
        assert match, output[-5000:]
        return int(match.group(1)), int(match.group(2)), output, seconds

    def sh(self, command: str) -> str:
        return self.lab.ssh("node", command, timeout=120).stdout.strip()

    def main_pid(self, unit: str) -> int:
        return int(self.sh(f"systemctl show -P MainPID {unit}"))

    def release_of(self, pid: int) -> set[str]:
        """The release virtualenvs whose files the process has mapped (its running code)."""
        maps = self.sh(f"cat /proc/{pid}/maps")
        return set(re.findall(r"/opt/scnode-apps/([^/\s]+-[0-9a-f]{12})/", maps))

    def current(self) -> str:
        return self.sh("readlink /opt/scnode-apps/current").rsplit("/", 1)[-1]

    def marker(self, app: str) -> str:
        """The release the role noted for the app's unit."""
        return self.sh(f"readlink /var/lib/scnode/releases/{UNITS[app]}").rsplit("/", 1)[-1]

    def versions(self) -> dict[str, str]:
        stratum = json.loads(self.sh(f"curl -sf http://127.0.0.1:{STRATUM_PORT}/version"))
        exchange = json.loads(self.sh(f"curl -s http://127.0.0.1:{EXCHANGE_PORT}/healthz"))
        return {"stratum": stratum["version"], "exchange": exchange["version"]}


def test_a_new_release_restarts_the_apps_of_every_play_on_one_host(
    scnode_lab_factory: Callable[..., LabHandle], tmp_path: Path
) -> None:
    started = time.monotonic()
    lab = scnode_lab_factory(("node",))
    node = Node(lab, tmp_path)
    release_a = _snapshot(tmp_path / "a")
    release_b = _snapshot(tmp_path / "b", version="0.1.0+onehost-b")

    changed, failed, out, first = node.converge(release_a)
    assert failed == 0 and changed > 0, out[-5000:]
    a = node.current()
    pids = {app: node.main_pid(unit) for app, unit in UNITS.items()}
    assert all(pids.values()), pids
    assert node.versions() == {"stratum": "0.1.0", "exchange": "0.1.0"}
    assert all(node.release_of(pid) == {a} for pid in pids.values()), pids

    changed, failed, out, update = node.converge(release_b)
    assert failed == 0, out[-5000:]
    b = node.current()
    assert b != a
    new_pids = {app: node.main_pid(unit) for app, unit in UNITS.items()}
    # both restarted, the second play's exchange too, and both run release B's code
    assert all(new_pids[app] not in (0, pids[app]) for app in UNITS), (pids, new_pids)
    assert node.versions() == {"stratum": "0.1.0+onehost-b", "exchange": "0.1.0+onehost-b"}
    assert all(node.release_of(pid) == {b} for pid in new_pids.values()), new_pids

    changed, failed, out, again = node.converge(release_b)
    assert (changed, failed) == (0, 0), out[-5000:]
    assert {app: node.main_pid(unit) for app, unit in UNITS.items()} == new_pids
    print(
        f"one-host apps update: lab + converges {time.monotonic() - started:.0f} s "
        f"(first {first:.0f} s, update {update:.0f} s, unchanged {again:.0f} s)"
    )


@pytest.mark.long_lab  # a lab of its own and three pip-installing converges: ~6 min idle
def test_a_failing_later_play_rolls_back_although_an_earlier_play_flipped_current(
    scnode_lab_factory: Callable[..., LabHandle], tmp_path: Path
) -> None:
    started = time.monotonic()
    lab = scnode_lab_factory(("node",))
    node = Node(lab, tmp_path)
    release_a = _snapshot(tmp_path / "a")
    release_c = _snapshot(tmp_path / "c", version="0.1.0+onehost-c", broken_exchange=True)

    changed, failed, out, _ = node.converge(release_a)
    assert failed == 0 and changed > 0, out[-5000:]
    a = node.current()
    assert node.marker("stratum") == node.marker("exchange") == a

    fast = ("-e", "scnode_apps_health_retries=5", "-e", "scnode_apps_health_delay=2")
    changed, failed, out, _ = node.converge(release_c, *fast)
    assert failed == 1, out[-5000:]
    assert "Rolled back:" in out, out[-5000:]
    assert node.current() == a
    # the exchange runs release A again and its link says so
    exchange = node.main_pid(UNITS["exchange"])
    assert node.versions()["exchange"] == "0.1.0"
    assert node.release_of(exchange) == {a} and node.marker("exchange") == a
    # the first play's stratum API passed on C and still runs it; C is kept for inspection
    c = node.marker("stratum")
    assert c != a and node.versions()["stratum"] == "0.1.0+onehost-c"
    assert node.sh(f"test -d /opt/scnode-apps/{c} && echo kept") == "kept"

    changed, failed, out, _ = node.converge(release_a)
    assert failed == 0 and changed > 0, out[-5000:]
    stratum = node.main_pid(UNITS["stratum"])
    assert node.versions()["stratum"] == "0.1.0" and node.release_of(stratum) == {a}
    assert node.marker("stratum") == a
    assert node.main_pid(UNITS["exchange"]) == exchange  # already on A: not restarted
    print(f"one-host apps rollback: lab + converges {time.monotonic() - started:.0f} s")
