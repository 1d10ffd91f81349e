"""proxmox_host on localhost, where nothing may change: validation, repository, adoption.

- Validation: one ansible-playbook run with `--tags validate` over one local host per case;
  each invalid case must be refused naming the variable, before any task that changes a host.
- The Proxmox VE install itself cannot run here (no Proxmox repository is reachable), so the
  repository part runs in check mode with --diff: the deb822 `.sources` file and the key file
  it would write are asserted from the diff, for both repositories.
- Adoption: with a `pveversion` on PATH that reports a PVE install, no key is needed and the
  install tasks are skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.roles.validation import assert_outcome, run_validate

ROOT = Path(__file__).resolve().parents[3]
# Not key material: the role only checks the armor line; nothing is imported from it here.
FAKE_KEY = (
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot-a-real-key\n-----END PGP PUBLIC KEY BLOCK-----"
)
OK = {"proxmox_host_repository_key": FAKE_KEY}

CASES: dict[str, tuple[dict[str, Any], list[str] | None]] = {
    "defaults_with_key": (OK, None),
    "display_name_derived": ({**OK, "proxmox_host_display_name": "SC Node #7"}, None),
    "no_key_to_install": ({}, ["proxmox_host_repository_key is empty"]),
    "no_install_no_key": ({"proxmox_host_install": False}, None),
    "bad_hostname": ({**OK, "proxmox_host_hostname": "SC_Node"}, ["proxmox_host_hostname"]),
    "display_name_without_letters": (
        {**OK, "proxmox_host_display_name": "!!!"},
        ["proxmox_host_hostname = ''", "proxmox_host_display_name"],
    ),
    "public_nat_subnet": (
        {**OK, "proxmox_host_nat_address": "8.8.8.1/24"},
        ["proxmox_host_nat_address = '8.8.8.1/24'", "private /24"],
    ),
    "nat_subnet_not_24": ({**OK, "proxmox_host_nat_address": "10.77.0.1/16"}, ["private /24"]),
    "nat_network_address": ({**OK, "proxmox_host_nat_address": "10.77.0.0/24"}, ["private /24"]),
    "forward_outside_subnet": (
        {**OK, "proxmox_host_port_forwards": [{"port": 19333, "to": "10.78.0.11"}]},
        ["proxmox_host_port_forwards[0]", "inside 10.77.0.1/24"],
    ),
    "forward_of_ssh": (
        {**OK, "proxmox_host_port_forwards": [{"port": 22, "to": "10.77.0.11"}]},
        ["proxmox_host_port_forwards[0]", "lock you out"],
    ),
    "forward_of_the_gui": (
        {**OK, "proxmox_host_port_forwards": [{"port": 8006, "to": "10.77.0.11"}]},
        ["lock you out"],
    ),
    "forward_bad_proto": (
        {**OK, "proxmox_host_port_forwards": [{"proto": "sctp", "port": 9, "to": "10.77.0.11"}]},
        ["proxmox_host_port_forwards[0]", "proto tcp or udp"],
    ),
    "forward_twice": (
        {
            **OK,
            "proxmox_host_port_forwards": [
                {"port": 3333, "to": "10.77.0.13"},
                {"port": 3333, "to": "10.77.0.14"},
            ],
        },
        ["forwards the same port more than once"],
    ),
    "forward_to_the_bridge": (
        {**OK, "proxmox_host_port_forwards": [{"port": 3333, "to": "10.77.0.1"}]},
        ["not the bridge itself"],
    ),
    "udp_and_tcp_same_port": (
        {
            **OK,
            "proxmox_host_port_forwards": [
                {"proto": "tcp", "port": 9735, "to": "10.77.0.12"},
                {"proto": "udp", "port": 9735, "to": "10.77.0.12"},
            ],
        },
        None,
    ),
    "same_bridges": ({**OK, "proxmox_host_nat_bridge": "vmbr0"}, ["two different interface"]),
    "unknown_repository": (
        {**OK, "proxmox_host_repository": "pvetest"},
        ["proxmox_host_repository must be one of"],
    ),
    "key_not_armored": (
        {"proxmox_host_repository_key": "mQINBFQ..."},
        ["ASCII-armored"],
    ),
    "rollback_too_short": (
        {**OK, "proxmox_host_network_rollback_seconds": 10},
        ["proxmox_host_network_rollback_seconds must be a number of seconds >= 30"],
    ),
    "token_user_without_realm": ({**OK, "proxmox_host_api_user": "automation"}, ["'<name>@pve'"]),
}

PLAYBOOK = """\
- name: Validate
  hosts: all
  gather_facts: false
  roles:
    - role: satoshiware.scnode.proxmox_host
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    cases = {name: host_vars for name, (host_vars, _) in CASES.items()}
    return run_validate(tmp_path_factory.mktemp("validate"), PLAYBOOK, cases)


@pytest.mark.parametrize("case", list(CASES))
def test_settings_are_validated_naming_the_variable(
    case: str, outcomes: dict[str, dict[str, Any]]
) -> None:
    assert_outcome(case, outcomes[case], CASES[case][1])


def _play(
    work: Path, host_vars: dict[str, Any], *args: str, path: str | None = None
) -> dict[str, Any]:
    hosts = {
        "pve": {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            **host_vars,
        }
    }
    (work / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    (work / "play.yml").write_text(PLAYBOOK)
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_LOCAL_TEMP=str(work / "tmp"),
    )
    if path is not None:
        env["PATH"] = f"{path}:{env['PATH']}"
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventory.yml"]
    run = subprocess.run(
        [*argv, "play.yml", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=work,
        check=False,
    )
    report: dict[str, Any] = json.loads(run.stdout)
    return report


def _results(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Task name -> the host's result."""
    return {
        task["task"]["name"].split(" : ")[-1]: task["hosts"]["pve"]
        for play in report["plays"]
        for task in play["tasks"]
        if "pve" in task["hosts"]
    }


def _diff_content(result: dict[str, Any]) -> str:
    """The new content of the file a task would write (its --diff)."""
    return str(next(d["after"] for d in result["diff"] if isinstance(d.get("after"), str)))


def _diff_paths(result: dict[str, Any]) -> set[str]:
    args = result.get("invocation", {}).get("module_args", {})
    paths = {result.get("dest", ""), result.get("path", ""), args.get("dest", "")}
    for diff in result["diff"]:
        paths |= {str(diff.get("before_header", "")), str(diff.get("after_header", ""))}
    return paths


@pytest.mark.parametrize(
    ("repository", "url", "component"),
    [
        ("no-subscription", "http://download.proxmox.com/debian/pve", "pve-no-subscription"),
        ("enterprise", "https://enterprise.proxmox.com/debian/pve", "pve-enterprise"),
    ],
)
def test_check_mode_shows_the_repository_files_it_would_write(
    tmp_path: Path, repository: str, url: str, component: str
) -> None:
    report = _play(
        tmp_path,
        {**OK, "proxmox_host_repository": repository},
        "--check",
        "--diff",
        "--tags",
        "repository",
    )
    assert report["stats"]["pve"]["failures"] == 0, report["stats"]
    results = _results(report)
    sources = results[f"Add the Proxmox VE repository ({repository})"]
    assert sources["changed"]
    assert "/etc/apt/sources.list.d/proxmox.sources" in _diff_paths(sources), sources
    after = _diff_content(sources)
    body = [line for line in after.splitlines() if not line.startswith("#")]
    assert body == [
        "Types: deb",
        f"URIs: {url}",
        "Suites: trixie",
        f"Components: {component}",
        "Signed-By: /etc/apt/keyrings/proxmox-release-trixie.asc",
    ]
    key = results["Install the Proxmox release key"]
    assert _diff_content(key) == FAKE_KEY + "\n"
    assert "/etc/apt/keyrings/proxmox-release-trixie.asc" in _diff_paths(key), key


def test_an_existing_proxmox_install_is_adopted_without_a_key(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pveversion"
    fake.write_text("#!/bin/sh\necho 'pve-manager/9.0.10/deadbeef (running kernel: 6.14.8)'\n")
    fake.chmod(0o755)
    report = _play(tmp_path, {}, "--check", "--tags", "install", path=str(bin_dir))
    assert report["stats"]["pve"]["failures"] == 0, report["stats"]
    results = _results(report)
    assert results["Remember whether Proxmox VE is already installed"]["ansible_facts"] == {
        "proxmox_host_installed": True
    }
    assert results["Install the Proxmox kernel"].get("skipped")
    assert results["Install the Proxmox VE packages"].get("skipped")


FAKE_PVEUM = """#!{python}
# Fake pveum: the subcommands proxmox_host uses, with PVE's JSON shapes, state in a file.
import json, sys
state_file = {state!r}
try:
    state = json.load(open(state_file))
except FileNotFoundError:
    state = {{"users": ["root@pam"], "tokens": {{}}, "acls": []}}
args = sys.argv[1:]
with open(state_file + ".log", "a") as log:
    log.write(json.dumps(args) + "\\n")
out = None
if args[:2] == ["user", "list"]:
    out = [{{"userid": u, "enable": 1}} for u in state["users"]]
elif args[:2] == ["user", "add"]:
    state["users"].append(args[2])
elif args[:3] == ["user", "token", "list"]:
    out = [{{"tokenid": t, "privsep": 1, "expire": 0}} for t in state["tokens"].get(args[3], [])]
elif args[:3] == ["user", "token", "add"]:
    state["tokens"].setdefault(args[3], []).append(args[4])
    out = {{"full-tokenid": args[3] + "!" + args[4], "info": {{"privsep": "1"}},
           "value": "5ec2e7aa-0000-4000-8000-" + "%012d" % len(state["tokens"][args[3]])}}
elif args[:3] == ["user", "token", "remove"]:
    state["tokens"][args[3]].remove(args[4])
elif args[:2] == ["acl", "list"]:
    out = state["acls"]
elif args[:2] == ["acl", "modify"]:
    kind = "token" if args[3] == "--tokens" else "user"
    state["acls"].append({{"path": args[2], "type": kind, "ugid": args[4], "roleid": args[6],
                          "propagate": 1}})
else:
    sys.exit("unknown pveum " + " ".join(args))
json.dump(state, open(state_file, "w"))
if out is not None:
    print(json.dumps(out))
"""


def test_api_user_token_and_acls_are_made_once_and_the_secret_stored(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pveversion").write_text("#!/bin/sh\necho 'pve-manager/9.0.10/deadbeef'\n")
    state = tmp_path / "pveum.json"
    (bin_dir / "pveum").write_text(FAKE_PVEUM.format(python=sys.executable, state=str(state)))
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    token_dir = tmp_path / "secrets"
    host_vars = {"proxmox_host_api_token_dir": str(token_dir)}
    first = _play(tmp_path, host_vars, "--tags", "api_token", path=str(bin_dir))
    assert first["stats"]["pve"]["failures"] == 0, first["stats"]
    assert first["stats"]["pve"]["changed"] > 0
    stored = json.loads((token_dir / "ansible.json").read_text())
    assert stored == {
        "api_user": "automation@pve",
        "api_token_id": "ansible",
        "api_token_secret": "5ec2e7aa-0000-4000-8000-000000000001",
    }
    assert (token_dir / "ansible.json").stat().st_mode & 0o777 == 0o600
    assert "5ec2e7aa" not in json.dumps(first)  # the secret never reaches the output
    acls = {(a["path"], a["roleid"], a["ugid"]) for a in json.loads(state.read_text())["acls"]}
    for principal in ("automation@pve", "automation@pve!ansible"):
        assert ("/vms", "PVEVMAdmin", principal) in acls
        assert ("/storage", "PVEDatastoreAdmin", principal) in acls
    assert len(acls) == 8
    calls = len(Path(f"{state}.log").read_text().splitlines())

    second = _play(tmp_path, host_vars, "--tags", "api_token", path=str(bin_dir))
    assert second["stats"]["pve"]["failures"] == 0, second["stats"]
    assert second["stats"]["pve"]["changed"] == 0
    again = [json.loads(line) for line in Path(f"{state}.log").read_text().splitlines()[calls:]]
    assert all("list" in call[:3] for call in again), again  # only reads on the second run
