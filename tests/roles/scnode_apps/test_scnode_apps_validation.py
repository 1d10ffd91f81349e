"""The scnode_apps role refuses invalid chain API instances before touching the host.

One ansible-playbook run against localhost aliases (one per case, `connection: local`) with
`--tags validate`: only the resolution and checks run (tagged `always`); nothing is built or
installed. Each case checks what a technician would see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.roles.validation import assert_outcome, run_validate

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
    cases = {name: {"scnode_apps_chain_apis": apis} for name, (apis, _) in CASES.items()}
    return run_validate(work, PLAYBOOK, cases)


@pytest.mark.parametrize("case", CASES)
def test_instances_are_accepted_or_refused_with_a_reason(
    outcomes: dict[str, dict[str, Any]], case: str
) -> None:
    _, expected = CASES[case]
    assert_outcome(case, outcomes[case], expected)
