"""The lightning role refuses invalid settings before touching the host, naming the variable,
and documents every variable it has.

One ansible-playbook run against localhost aliases (one per case, `connection: local`) with
`--tags validate`: only the argument spec, the settings and the validation tasks run, so nothing
is downloaded or installed here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.roles.validation import assert_outcome, run_validate

ROLE = Path(__file__).resolve().parents[3] / "roles" / "lightning"
PEER = "02" + "ab" * 32
VALID: dict[str, Any] = {
    "lightning_sha256sums_sha256": "cd" * 32,
    "lightning_clzmq_commit": "ef" * 20,
    "lightning_clzmq_archive_sha256": "01" * 32,
    "lightning_cluster_peer_id": PEER,
    "lightning_cluster_peer_host": "10.66.66.1",
}


def _vars(**changes: Any) -> dict[str, Any]:
    return {**VALID, **{f"lightning_{k}": v for k, v in changes.items()}}


# case name → (host vars, None if valid else words the failure message must contain)
CASES: dict[str, tuple[dict[str, Any], list[str] | None]] = {
    "complete": (_vars(), None),
    "no_channel_wanted": (_vars(cluster_peer_id="", cluster_peer_host=""), None),
    "cl_zmq_off_needs_no_pin": (
        _vars(clzmq_enabled=False, clzmq_commit="", clzmq_archive_sha256=""),
        None,
    ),
    "no_release_pin": (
        _vars(sha256sums_sha256=""),
        ["lightning_sha256sums_sha256 is required", "SHA256SUMS-v26.06.2"],
    ),
    "no_clzmq_commit": (
        _vars(clzmq_commit="master"),
        ["lightning_clzmq_commit", "lightning_clzmq_archive_sha256"],
    ),
    "no_clzmq_hash": (_vars(clzmq_archive_sha256=""), ["lightning_clzmq_archive_sha256"]),
    "a_zmq_topic_missing": (
        _vars(
            clzmq_endpoints={
                "invoice_payment": "tcp://127.0.0.1:28443",
                "warning": "tcp://127.0.0.1:28444",
            }
        ),
        ["lightning_clzmq_endpoints must set all eight topics", "lightningd/plugins#553"],
    ),
    "peer_id_not_a_node_id": (
        _vars(cluster_peer_id="cluster"),
        ["lightning_cluster_peer_id must be the SC Cluster node's id"],
    ),
    "peer_without_host": (
        _vars(cluster_peer_host=""),
        ["lightning_cluster_peer_host set"],
    ),
    "channel_too_small": (
        _vars(cluster_channel_amount_sat=1000),
        ["lightning_cluster_channel_amount_sat", "at least 20000"],
    ),
    "backup_inside_the_data_dir": (
        _vars(wallet_backup_path="/var/lib/lightning/backup.sqlite3"),
        ["lightning_wallet_backup_path", "outside lightning_dir"],
    ),
    "unknown_network": (
        _vars(network="mainnet"),
        ["lightning_network", "mainnet"],
    ),
    "alias_too_long": (_vars(alias="x" * 33), ["lightning_alias", "1 to 32"]),
    "bind_addr_without_port": (_vars(bind_addr=["10.0.0.1"]), ["lightning_bind_addr"]),
    "version_as_a_number": (_vars(version=26.06), ["lightning_version"]),
}

PLAYBOOK = """
- name: Validate lightning settings only
  hosts: all
  gather_facts: true
  gather_subset: [min]
  tasks:
    - name: Include the role
      ansible.builtin.include_role:
        name: satoshiware.scnode.lightning
      tags: [always]
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Per case: {'failed': bool, 'msg': str} from one playbook run over all cases."""
    work = tmp_path_factory.mktemp("lightning_validation")
    return run_validate(work, PLAYBOOK, {name: host_vars for name, (host_vars, _) in CASES.items()})


@pytest.mark.parametrize("case", CASES)
def test_settings_are_accepted_or_refused_with_the_variable_named(
    outcomes: dict[str, dict[str, Any]], case: str
) -> None:
    _, expected = CASES[case]
    assert_outcome(case, outcomes[case], expected)


def _specs() -> dict[str, Any]:
    data = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    options: dict[str, Any] = data["argument_specs"]["main"]["options"]
    return options


def test_every_default_has_a_spec_with_the_same_value_and_a_description() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    specs = _specs()
    assert sorted(defaults) == sorted(specs)
    for name, value in defaults.items():
        assert specs[name]["default"] == value, name
        assert specs[name]["description"], name


def test_readme_lists_every_variable() -> None:
    readme = (ROLE / "README.md").read_text()
    table = readme.split("<!-- BEGIN VARIABLES")[1].split("<!-- END VARIABLES -->")[0]
    assert [name for name in _specs() if f"| `{name}` |" not in table] == []
