"""The scnode_apps role refuses invalid chain API instances before touching the host.

One ansible-playbook run against localhost aliases (one per case, `connection: local`) with
`--tags validate`: only the resolution and checks run (tagged `always`); nothing is built or
installed. Each case checks what a technician would see.
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

from tests.roles.validation import assert_outcome, failures_by_host

ROOT = Path(__file__).resolve().parents[3]
BTC = {"chain": "bitcoin", "prefix": "btc", "port": 8401}
AZ = {"chain": "azcoin", "prefix": "az", "port": 8402}

# case name → (scnode_apps_chain_apis, None if valid else words the failure message must contain)
CASES: dict[str, tuple[list[dict[str, Any]], list[str] | None]] = {
    "none": ([], None),
    "bitcoin_and_azcoin": ([BTC, AZ], None),
    "own_keys_and_settings": (
        [
            {
                **BTC,
                "initial_keys": [{"name": "exchange", "scopes": ["read", "deposit", "send"]}],
                "settings": {"rpc_timeout": 10},
            }
        ],
        None,
    ),
    "typo_in_a_key": ([{**BTC, "prot": 1}], ["unknown keys prot"]),
    "missing_port": ([{"chain": "bitcoin", "prefix": "btc"}], ["needs chain", "port"]),
    "bad_prefix": ([{**BTC, "prefix": "B-T-C"}], ["prefix"]),
    "port_out_of_range": ([{**BTC, "port": 70000}], ["port (1-65535)"]),
    "same_port_twice": ([BTC, {**AZ, "port": 8401}], ["same chain, prefix or port"]),
    "same_prefix_twice": ([BTC, {**AZ, "prefix": "btc"}], ["same chain, prefix or port"]),
    "setting_the_role_owns": ([{**BTC, "settings": {"rpc_password": "x"}}], ["must not set"]),
    "bad_key_name": (
        [{**BTC, "initial_keys": [{"name": "Read Key", "scopes": ["read"]}]}],
        ["initial_keys"],
    ),
}

PLAYBOOK = """
- name: Validate scnode_apps settings only
  hosts: all
  gather_facts: false
  tasks:
    - name: Include the role
      ansible.builtin.include_role:
        name: satoshiware.scnode.scnode_apps
      tags: [always]
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    work = tmp_path_factory.mktemp("scnode_apps_validation")
    hosts = {
        name: {
            "ansible_connection": "local",
            "ansible_host": "127.0.0.1",
            "ansible_python_interpreter": sys.executable,
            "scnode_apps_chain_apis": apis,
        }
        for name, (apis, _) in CASES.items()
    }
    (work / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    (work / "play.yml").write_text(PLAYBOOK)
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
    report = json.loads(run.stdout)
    return failures_by_host(report, CASES)


@pytest.mark.parametrize("case", CASES)
def test_instances_are_accepted_or_refused_with_a_reason(
    outcomes: dict[str, dict[str, Any]], case: str
) -> None:
    _, expected = CASES[case]
    assert_outcome(case, outcomes[case], expected)
