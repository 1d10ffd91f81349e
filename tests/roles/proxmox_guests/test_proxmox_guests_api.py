"""proxmox_guests against a Proxmox VE API stand-in on loopback HTTPS (pve_mock.py).

The role runs for real with `ansible-playbook` on localhost (connection local, as on the PVE
host), its modules (community.proxmox through proxmoxer, and `uri`) make real HTTPS requests
to the stand-in, and each test asserts the requests it received: the template download, each
container's create with the settings a technician set, task polling until the UPID is
stopped/OK, starts, in-place correction of a changed setting, nothing at all on a second run,
and a refused token reported with words that say what to check. Bind mounts go through a fake
`pct` that tells the stand-in, as the real one would change the container's config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.roles.proxmox_guests.pve_mock import PveMock, Request, serve

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = "debian-13-standard_13.1-2_amd64.tar.zst"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGenerated0AtTest0Time0Only0Not0A0Real0Key test@pytest"
GUESTS: dict[str, dict[str, Any]] = {
    "chain": {
        "vmid": 211,
        "ip": "10.77.0.11",
        "cores": 2,
        "memory_mib": 4096,
        "swap_mib": 512,
        "disk_gib": 16,
        "groups": ["chain"],
        "volumes": [
            {"name": "bitcoin", "mountpoint": "/var/lib/bitcoin"},
            {"name": "azcoin", "mountpoint": "/var/lib/azcoin"},
        ],
    },
    "mining": {
        "vmid": 213,
        "ip": "10.77.0.13",
        "cores": 1,
        "memory_mib": 1024,
        "swap_mib": 256,
        "disk_gib": 8,
        "groups": ["mining"],
        "volumes": [],
    },
}

PLAY = """\
- name: Guests
  hosts: sc-node
  gather_facts: false
  roles:
    - role: satoshiware.scnode.proxmox_guests
  post_tasks:
    - name: Record what the inventory looks like now
      ansible.builtin.copy:
        content: >-
          {{ {'groups': groups,
              'hosts': dict(groups['scnode']
                            | zip(groups['scnode'] | map('extract', hostvars)
                                  | map(attribute='ansible_host')))}
             | to_json }}
        dest: "{{ inventory_dir }}/inventory-after.json"
        mode: "0600"
"""


class Lab:
    """One stand-in PVE and the files of a run against it."""

    def __init__(self, mock: PveMock, port: int, ca: Path, work: Path) -> None:
        self.mock, self.port, self.ca, self.work = mock, port, ca, work
        self.first: dict[str, Any] = {}
        self.first_run: subprocess.CompletedProcess[str] | None = None
        self.first_requests: list[Request] = []
        self.pct_log = work / "pct.log"
        self.pct = work / "pct"
        self.pct.write_text(
            textwrap.dedent(f"""\
                #!{sys.executable}
                # Fake pct: records its argv and sets the mount in the stand-in's config.
                import json, ssl, sys, urllib.request
                with open({str(self.pct_log)!r}, "a") as log:
                    log.write(json.dumps(sys.argv[1:]) + "\\n")
                _, vmid, option, value = sys.argv[1:]
                body = json.dumps({{"vmid": vmid, "key": option.lstrip("-"), "value": value}})
                context = ssl.create_default_context(cafile={str(ca)!r})
                urllib.request.urlopen(urllib.request.Request(
                    "https://127.0.0.1:{port}/api2/json/_mock/pct-set", data=body.encode(),
                    method="POST"), context=context).read()
            """)
        )
        self.pct.chmod(0o755)

    def run(self, **overrides: Any) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
        host_vars: dict[str, Any] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "proxmox_guests_node": self.mock.node,
            "proxmox_guests_api_port": self.port,
            "proxmox_guests_api_ca_file": str(self.ca),
            "proxmox_guests_api_token_secret": self.mock.secret,
            "proxmox_guests_install_client": False,
            "proxmox_guests_wait_for_ssh": False,
            "proxmox_guests_pct_command": str(self.pct),
            "proxmox_guests_volume_root": str(self.work / "volumes"),
            "proxmox_guests_volume_owner": os.getuid(),
            "proxmox_guests_ssh_public_keys": [KEY],
            "proxmox_guests_task_timeout": 30,
            "proxmox_guests_guests": GUESTS,
            **overrides,
        }
        inventory = {"all": {"hosts": {"sc-node": host_vars}}}
        (self.work / "inventory.yml").write_text(yaml.safe_dump(inventory))
        (self.work / "play.yml").write_text(PLAY)
        env = dict(os.environ)
        env.update(
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
            ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
            ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
            ANSIBLE_LOCAL_TEMP=str(self.work / "tmp"),
        )
        # the CA of the stand-in only through the role's variable, never the environment
        env.pop("REQUESTS_CA_BUNDLE", None)
        argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventory.yml"]
        run = subprocess.run(
            [*argv, "play.yml"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            cwd=self.work,
            check=False,
        )
        return json.loads(run.stdout), run


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A stand-in PVE the role has converged once (the first run's report in `first`)."""
    work = tmp_path_factory.mktemp("pve")
    mock = PveMock()
    with serve(mock, work) as (port, ca):
        lab = Lab(mock, port, ca, work)
        lab.first, lab.first_run = lab.run()
        lab.first_requests = list(mock.requests)
        yield lab


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Lab]:
    """A stand-in PVE the role has not touched."""
    mock = PveMock()
    with serve(mock, tmp_path) as (port, ca):
        yield Lab(mock, port, ca, tmp_path)


def _writes(requests: list[Request]) -> list[Request]:
    return [r for r in requests if r.method != "GET"]


def _failure(report: dict[str, Any]) -> str:
    for play in report["plays"]:
        for task in play["tasks"]:
            for result in task["hosts"].values():
                if result.get("failed"):
                    messages = [result.get("msg", "")]
                    messages += [item.get("msg", "") for item in result.get("results", [])]
                    return " ".join(" ".join(str(m) for m in messages if m).split())
    return ""


def test_guests_are_created_started_and_added_then_a_second_run_changes_nothing(lab: Lab) -> None:
    report = lab.first
    assert report["stats"]["sc-node"]["failures"] == 0, _failure(report)
    writes = _writes(lab.first_requests)
    # 1. the template, downloaded from the appliance index once
    assert [(r.path, r.form) for r in writes if r.path.endswith("aplinfo")] == [
        ("nodes/sc-node/aplinfo", {"storage": "local", "template": TEMPLATE})
    ]
    # 2. one create per guest with the settings of the inventory
    creates = [r.form for r in writes if r.path == "nodes/sc-node/lxc"]
    assert creates == [
        {
            "vmid": "211",
            "ostemplate": f"local:vztmpl/{TEMPLATE}",
            "hostname": "chain",
            "cores": "2",
            "memory": "4096",
            "swap": "512",
            "rootfs": "local-lvm:16",
            "net0": "name=eth0,bridge=vmbr1,ip=10.77.0.11/24,gw=10.77.0.1",
            "unprivileged": "1",
            "features": "nesting=1",
            "onboot": "1",
            "ssh-public-keys": KEY,
            # the module's own: no forced re-create, its default storage (the rootfs names its own)
            "force": "0",
            "storage": "local",
        },
        {
            "vmid": "213",
            "ostemplate": f"local:vztmpl/{TEMPLATE}",
            "hostname": "mining",
            "cores": "1",
            "memory": "1024",
            "swap": "256",
            "rootfs": "local-lvm:8",
            "net0": "name=eth0,bridge=vmbr1,ip=10.77.0.13/24,gw=10.77.0.1",
            "unprivileged": "1",
            "features": "nesting=1",
            "onboot": "1",
            "ssh-public-keys": KEY,
            # the module's own: no forced re-create, its default storage (the rootfs names its own)
            "force": "0",
            "storage": "local",
        },
    ]
    # 3. every task (download, 2 creates, 2 starts) polled until stopped/OK, not one poll less
    assert len(lab.mock.tasks) == 5
    for upid, task in lab.mock.tasks.items():
        polls = [r for r in lab.first_requests if r.path == f"nodes/sc-node/tasks/{upid}/status"]
        assert len(polls) >= lab.mock.task_polls + 1, (task.kind, len(polls))
        assert task.polls_left == 0
    # 4. bind mounts through pct, in the order given; then both guests started
    assert [json.loads(line) for line in lab.pct_log.read_text().splitlines()] == [
        ["set", "211", "--mp0", f"{lab.work}/volumes/bitcoin,mp=/var/lib/bitcoin"],
        ["set", "211", "--mp1", f"{lab.work}/volumes/azcoin,mp=/var/lib/azcoin"],
    ]
    assert (lab.work / "volumes" / "bitcoin").is_dir()
    starts = [r.path for r in writes if r.path.endswith("/status/start")]
    assert starts == ["nodes/sc-node/lxc/211/status/start", "nodes/sc-node/lxc/213/status/start"]
    assert all(c.status == "running" for c in lab.mock.containers.values())
    # 5. the inventory: site.yml's groups now hold the guests, reachable at their addresses
    after = json.loads((lab.work / "inventory-after.json").read_text())
    assert after["groups"]["chain"] == ["chain.sc-node"]
    assert after["groups"]["mining"] == ["mining.sc-node"]
    assert after["hosts"] == {"chain.sc-node": "10.77.0.11", "mining.sc-node": "10.77.0.13"}

    # A second run: the same answers, so not one write and nothing reported changed.
    mark = lab.mock.mark()
    report, _ = lab.run()
    assert report["stats"]["sc-node"]["failures"] == 0, _failure(report)
    assert _writes(lab.mock.since(mark)) == []
    assert report["stats"]["sc-node"]["changed"] == 0
    assert len(lab.pct_log.read_text().splitlines()) == 2


def test_a_changed_setting_is_corrected_in_place_and_a_stopped_guest_started(lab: Lab) -> None:
    assert lab.first["stats"]["sc-node"]["failures"] == 0, _failure(lab.first)
    # Someone changed the chain guest's memory in the GUI and stopped the mining guest.
    lab.mock.containers[211].config["memory"] = 2048
    lab.mock.containers[213].status = "stopped"
    mark = lab.mock.mark()
    report, _ = lab.run()
    assert report["stats"]["sc-node"]["failures"] == 0, _failure(report)
    writes = _writes(lab.mock.since(mark))
    assert [(r.method, r.path) for r in writes] == [
        ("PUT", "nodes/sc-node/lxc/211/config"),
        ("POST", "nodes/sc-node/lxc/213/status/start"),
    ]
    put = writes[0].form
    assert put["memory"] == "4096"
    assert put["net0"] == "name=eth0,bridge=vmbr1,ip=10.77.0.11/24,gw=10.77.0.1"
    assert "rootfs" not in put and "ostemplate" not in put  # never recreated or resized
    assert lab.mock.containers[211].config["memory"] == 4096
    assert lab.mock.containers[213].status == "running"


def test_a_guest_with_a_smaller_disk_is_refused_not_recreated(lab: Lab) -> None:
    assert lab.first["stats"]["sc-node"]["failures"] == 0, _failure(lab.first)
    guests = json.loads(json.dumps(GUESTS))
    guests["mining"]["disk_gib"] = 32
    mark = lab.mock.mark()
    report, _ = lab.run(proxmox_guests_guests=guests)
    message = _failure(report)
    assert "proxmox_guests_guests.mining" in message
    assert "pct resize 213 rootfs 32G" in message
    assert _writes(lab.mock.since(mark)) == []


def test_a_refused_token_is_reported_and_nothing_else_is_asked(fresh: Lab) -> None:
    report, _ = fresh.run(proxmox_guests_api_token_secret="11111111-2222-3333-4444-555555555555")
    message = _failure(report)
    assert "refused the token automation@pve!ansible (HTTP 401)" in message
    assert "proxmox_guests_api_token_secret" in message
    assert "11111111" not in json.dumps(report)  # the secret never reaches the output
    assert [(r.method, r.path) for r in fresh.mock.requests] == [("GET", "version")]
    assert fresh.mock.containers == {}
