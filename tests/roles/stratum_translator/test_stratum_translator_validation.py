"""The stratum_translator role refuses invalid settings before touching the host, naming
the variable.

One ansible-playbook run against localhost aliases (one per case, `connection: local`) with
`--tags validate`: only the argument spec, the settings and the validation tasks run, so nothing
is downloaded or installed here. Each case checks the outcome a technician would see.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.roles.validation import assert_outcome, run_validate

PIN = "ab" * 32
POOL = {
    "upstream_address": "10.66.66.1",
    "authority_pubkey": "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72",
    "archive_sha256": PIN,
}


def _vars(instance: str = "btc", serial: str | None = "SN123", **keys: Any) -> dict[str, Any]:
    """Host vars of a node whose inventory gives the pool, the pin and (unless None) the serial."""
    host: dict[str, Any] = {
        "stratum_translator_instance": instance,
        "stratum_translator_overrides": {instance: {**POOL, **keys}},
    }
    if serial is not None:
        host["stratum_translator_serial"] = serial
    return host


# case name → (host vars, None if valid else words the failure message must contain)
CASES: dict[str, tuple[dict[str, Any], list[str] | None]] = {
    "btc_complete": (_vars("btc"), None),
    "azc_complete": (_vars("azc"), None),
    "user_identity_without_serial": (
        _vars("btc", serial=None),
        ["stratum_translator_serial is not set", "btc-{serial}"],
    ),
    "empty_serial": (_vars("azc", serial=""), ["stratum_translator_serial is not set"]),
    "whole_user_identity_needs_no_serial": (
        _vars("azc", serial=None, user_identity="az/scnode/17"),
        None,
    ),
    "user_identity_with_a_space": (
        _vars("btc", user_identity="btc node"),
        ["stratum_translator_user_identity", "must be letters, digits"],
    ),
    "bad_instance": (
        {**_vars("btc"), "stratum_translator_instance": "ltc"},
        ["stratum_translator_instance", "btc, azc", "ltc"],
    ),
    "port_out_of_range": (
        _vars("btc", downstream_port=70000),
        ["stratum_translator_downstream_port", "1-65535", "70000"],
    ),
    "port_not_a_number": (
        _vars("azc", upstream_port="pool"),
        ["stratum_translator_upstream_port", "1-65535"],
    ),
    "port_as_direct_variable_of_wrong_type": (
        {**_vars("btc"), "stratum_translator_downstream_port": "three"},
        ["stratum_translator_downstream_port"],
    ),
    "monitoring_on_the_miners_port": (
        _vars("btc", monitoring_address="127.0.0.1:3333"),
        ["stratum_translator_downstream_port and the monitoring port must differ"],
    ),
    "monitoring_open_to_the_network": (
        _vars("btc", monitoring_address="0.0.0.0:9093"),
        ["stratum_translator_monitoring_address", "loopback"],
    ),
    "no_pinned_hash": (
        _vars("btc", archive_sha256=""),
        ["stratum_translator_archive_sha256", "is required for sv2-apps v0.5.0"],
    ),
    "no_pool_address": (
        _vars("azc", upstream_address=""),
        ["stratum_translator_upstream_address"],
    ),
    "no_authority_key": (
        _vars("btc", authority_pubkey=""),
        ["stratum_translator_authority_pubkey", "base58"],
    ),
    "rust_log_filter_syntax": (
        _vars("btc", rust_log="translator_sv2=debug"),
        ["stratum_translator_rust_log must be one level"],
    ),
    "miners_port_open_to_the_world": (
        _vars("btc", firewall_sources=["0.0.0.0/0"]),
        ["stratum_translator_firewall_sources", "not 0.0.0.0/0"],
    ),
    "no_lan_sources": (
        _vars("azc", firewall_sources=[]),
        ["stratum_translator_firewall_sources", "not empty"],
    ),
    "typo_in_overrides": (
        _vars("btc", shares_per_minut=10),
        ["stratum_translator_overrides.btc has unknown keys shares_per_minut"],
    ),
    "version_as_a_number": (
        _vars("btc", version=5),
        ["version must be a quoted string"],
    ),
    "zero_shares_per_minute": (
        _vars("azc", shares_per_minute=0),
        ["stratum_translator_shares_per_minute"],
    ),
    "two_instances_take_their_own_overrides": (
        {
            "stratum_translator_instance": "azc",
            "stratum_translator_serial": "SN1",
            "stratum_translator_overrides": {"btc": {"downstream_port": 70000}, "azc": POOL},
        },
        None,
    ),
}

PLAYBOOK = """
- name: Validate stratum_translator settings only
  hosts: all
  gather_facts: true
  gather_subset: [min]
  tasks:
    - name: Include the role
      ansible.builtin.include_role:
        name: satoshiware.scnode.stratum_translator
      tags: [always]
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Per case: {'failed': bool, 'msg': str} from one playbook run over all cases."""
    work = tmp_path_factory.mktemp("stratum_translator_validation")
    return run_validate(work, PLAYBOOK, {name: host_vars for name, (host_vars, _) in CASES.items()})


@pytest.mark.parametrize("case", CASES)
def test_settings_are_accepted_or_refused_with_the_variable_named(
    outcomes: dict[str, dict[str, Any]], case: str
) -> None:
    _, expected = CASES[case]
    assert_outcome(case, outcomes[case], expected)
