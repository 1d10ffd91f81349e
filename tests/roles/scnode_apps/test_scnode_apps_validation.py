"""The scnode_apps role refuses invalid chain API, stratum stats API and exchange settings
before touching the host.

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

BTC_STATS = {"instance": "btc", "port": 8411}
AZC_STATS = {"instance": "azc", "port": 8412}
CHAINS = {"bitcoin": {"asset": "SATS", "api_url": "http://10.0.0.11:8501", "key_host": "none"}}
POOLS = {
    "btc": {
        "chain": "bitcoin",
        "stats_api_url": "http://10.0.0.13:8511",
        "stats_key_host": "none",
        "first_window_start": 1735689600,
    }
}
EXCHANGE = {
    "scnode_apps_exchange_enabled": True,
    "scnode_apps_exchange_chains": CHAINS,
    "scnode_apps_exchange_mining_pools": POOLS,
}

# case name → (host vars, None if valid else words the failure message must contain)
MORE_CASES: dict[str, tuple[dict[str, Any], list[str] | None]] = {
    "stratum_btc_and_azc": ({"scnode_apps_stratum_apis": [BTC_STATS, AZC_STATS]}, None),
    "stratum_published": (
        {
            "scnode_apps_stratum_apis": [
                {**BTC_STATS, "publish_port": 8511, "publish_sources": ["10.0.0.14"]}
            ],
            "scnode_apps_publish_address": "10.0.0.13",
        },
        None,
    ),
    "stratum_published_to_nobody": (
        {
            "scnode_apps_stratum_apis": [{**BTC_STATS, "publish_port": 8511}],
            "scnode_apps_publish_address": "10.0.0.13",
        },
        ["publish_sources"],
    ),
    "stratum_published_without_address": (
        {
            "scnode_apps_stratum_apis": [
                {**BTC_STATS, "publish_port": 8511, "publish_sources": ["x"]}
            ]
        },
        ["scnode_apps_publish_address"],
    ),
    "stratum_typo": (
        {"scnode_apps_stratum_apis": [{**BTC_STATS, "logfile": "/x"}]},
        ["unknown keys logfile"],
    ),
    "stratum_relative_log": (
        {"scnode_apps_stratum_apis": [{**BTC_STATS, "log_file": "btc.log"}]},
        ["absolute log_file"],
    ),
    "stratum_owned_setting": (
        {"scnode_apps_stratum_apis": [{**BTC_STATS, "settings": {"log_file": "/x"}}]},
        ["must not set", "LOG_FILE"],
    ),
    "stratum_same_instance_twice": (
        {"scnode_apps_stratum_apis": [BTC_STATS, {**BTC_STATS, "port": 8413}]},
        ["names an instance twice"],
    ),
    "chain_and_stratum_same_port": (
        {
            "scnode_apps_chain_apis": [BTC],
            "scnode_apps_stratum_apis": [{**BTC_STATS, "port": 8401}],
        },
        ["same port", "8401, 8401"],
    ),
    # the Lightning API (default port 8420) was left out of this check (a one-host node)
    "lightning_api_and_exchange_same_port": (
        {**EXCHANGE, "scnode_apps_lightning_api_enabled": True, "scnode_apps_exchange_port": 8420},
        ["same port", "8420, 8420", "scnode_apps_lightning_api"],
    ),
    "chain_published_on_its_own_port": (
        {
            "scnode_apps_chain_apis": [{**BTC, "publish_port": 8401, "publish_sources": ["x"]}],
            "scnode_apps_publish_address": "10.0.0.11",
        },
        ["publish_port must be 0"],
    ),
    "exchange": (EXCHANGE, None),
    "exchange_postgresql": (
        {**EXCHANGE, "scnode_apps_exchange_database_url": "postgresql+psycopg://x:y@db/exchange"},
        None,
    ),
    "exchange_bad_database_url": (
        {**EXCHANGE, "scnode_apps_exchange_database_url": "mysql://db/x"},
        ["scnode_apps_exchange_database_url"],
    ),
    "exchange_chain_without_key_host": (
        {
            **EXCHANGE,
            "scnode_apps_exchange_chains": {"bitcoin": {**CHAINS["bitcoin"], "key_host": "nohost"}},
        },
        ["scnode_apps_exchange_chains.bitcoin", "key_host"],
    ),
    "exchange_chain_bad_asset": (
        {
            **EXCHANGE,
            "scnode_apps_exchange_chains": {"bitcoin": {**CHAINS["bitcoin"], "asset": "sats"}},
        },
        ["scnode_apps_exchange_chains.bitcoin"],
    ),
    "exchange_pool_of_unknown_chain": (
        {
            **EXCHANGE,
            "scnode_apps_exchange_mining_pools": {"btc": {**POOLS["btc"], "chain": "litecoin"}},
        },
        ["scnode_apps_exchange_mining_pools.btc", "chain"],
    ),
    "exchange_unknown_pool": (
        {**EXCHANGE, "scnode_apps_exchange_mining_pools": {"ltc": POOLS["btc"]}},
        ["scnode_apps_exchange_mining_pools.ltc", "btc or azc"],
    ),
    "exchange_pool_without_window_start": (
        {
            **EXCHANGE,
            "scnode_apps_exchange_mining_pools": {
                "btc": {k: v for k, v in POOLS["btc"].items() if k != "first_window_start"}
            },
        },
        ["first_window_start"],
    ),
    "exchange_owned_setting": (
        {**EXCHANGE, "scnode_apps_exchange_settings": {"chains": "{}"}},
        ["must not set", "CHAINS"],
    ),
    "unknown_component": ({"scnode_apps_components": ["wallet_ui"]}, ["scnode_apps_components"]),
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
    cases.update({name: host_vars for name, (host_vars, _) in MORE_CASES.items()})
    return run_validate(work, PLAYBOOK, cases)


@pytest.mark.parametrize("case", CASES)
def test_instances_are_accepted_or_refused_with_a_reason(
    outcomes: dict[str, dict[str, Any]], case: str
) -> None:
    _, expected = CASES[case]
    assert_outcome(case, outcomes[case], expected)


@pytest.mark.parametrize("case", MORE_CASES)
def test_stratum_apis_and_exchange_are_accepted_or_refused_with_a_reason(
    outcomes: dict[str, dict[str, Any]], case: str
) -> None:
    _, expected = MORE_CASES[case]
    assert_outcome(case, outcomes[case], expected)
