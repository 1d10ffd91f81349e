"""The chain_node role refuses invalid settings before touching the host, naming the variable.

One ansible-playbook run against localhost aliases (one per case, `connection: local`) with
`--tags validate`: only the settings and validation tasks run (they are tagged `always`), so
nothing is downloaded or installed here. Each case checks the outcome a technician would see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.roles.validation import assert_outcome, run_validate

ROOT = Path(__file__).resolve().parents[3]

# case name → (host vars, None if valid else words the failure message must contain)
CASES: dict[str, tuple[dict[str, Any], list[str] | None]] = {
    "bitcoin_defaults": ({"chain_node_chain": "bitcoin"}, None),
    "prune_manual_1": ({"chain_node_chain": "bitcoin", "chain_node_prune": 1}, None),
    "prune_off_0": ({"chain_node_chain": "bitcoin", "chain_node_prune": 0}, None),
    "prune_550": ({"chain_node_chain": "bitcoin", "chain_node_prune": 550}, None),
    "prune_2": (
        {"chain_node_chain": "bitcoin", "chain_node_prune": 2},
        ["chain_node_prune", "prune = 2 is invalid"],
    ),
    "prune_549": (
        {"chain_node_chain": "bitcoin", "chain_node_prune": 549},
        ["chain_node_prune", "prune = 549 is invalid"],
    ),
    "prune_300_in_overrides": (
        {"chain_node_chain": "bitcoin", "chain_node_overrides": {"bitcoin": {"prune": 300}}},
        ["chain_node_overrides.bitcoin.prune", "= 300 is invalid"],
    ),
    "prune_with_txindex": (
        {"chain_node_chain": "bitcoin", "chain_node_txindex": True},
        ["chain_node_txindex", "incompatible with pruning", "prune = 25000"],
    ),
    "manual_prune_with_txindex": (
        {"chain_node_chain": "bitcoin", "chain_node_prune": 1, "chain_node_txindex": True},
        ["chain_node_txindex", "incompatible with pruning"],
    ),
    "azcoin_full_node_with_txindex": (
        {
            "chain_node_chain": "azcoin",
            "chain_node_txindex": True,
            "chain_node_overrides": {"azcoin": {"sha256sums_sha256": "a" * 64}},
        },
        None,
    ),
    "azcoin_without_pinned_hash": (
        {"chain_node_chain": "azcoin"},
        ["chain_node_sha256sums_sha256", "is required for azcoin 0.2.2"],
    ),
    "bitcoin_unknown_version_without_hash": (
        {"chain_node_chain": "bitcoin", "chain_node_version": "30.1"},
        ["chain_node_sha256sums_sha256", "is required for bitcoin 30.1"],
    ),
    "version_as_a_number": (
        {"chain_node_chain": "bitcoin", "chain_node_overrides": {"bitcoin": {"version": 30.2}}},
        ["version must be a quoted string"],
    ),
    "typo_in_overrides": (
        {"chain_node_chain": "bitcoin", "chain_node_overrides": {"bitcoin": {"prunee": 550}}},
        ["chain_node_overrides.bitcoin has unknown keys prunee"],
    ),
    "same_port_twice": (
        {"chain_node_chain": "bitcoin", "chain_node_rpc_port": 8333},
        ["must all differ"],
    ),
    "microcurrency_without_ports": (
        {
            "chain_node_chain": "phxmoney",
            "chain_node_overrides": {
                "phxmoney": {
                    "version": "1.0.0",
                    "download_base_url": "https://example.org/{version}",
                    "sha256sums_sha256": "b" * 64,
                }
            },
        },
        ["a microcurrency has no default ports"],
    ),
    "two_instances_take_their_own_overrides": (
        {
            "chain_node_chain": "azcoin",
            "chain_node_overrides": {
                "bitcoin": {"prune": 300},
                "azcoin": {"sha256sums_sha256": "c" * 64, "prune": 1},
            },
        },
        None,
    ),
}

PLAYBOOK = """
- name: Validate chain_node settings only
  hosts: all
  gather_facts: true
  gather_subset: [min]
  tasks:
    - name: Include the role
      ansible.builtin.include_role:
        name: satoshiware.scnode.chain_node
      tags: [always]
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Per case: {'failed': bool, 'msg': str} from one playbook run over all cases."""
    work = tmp_path_factory.mktemp("chain_node_validation")
    return run_validate(work, PLAYBOOK, {name: host_vars for name, (host_vars, _) in CASES.items()})


@pytest.mark.parametrize("case", CASES)
def test_settings_are_accepted_or_refused_with_the_variable_named(
    outcomes: dict[str, dict[str, Any]], case: str
) -> None:
    _, expected = CASES[case]
    assert_outcome(case, outcomes[case], expected)
