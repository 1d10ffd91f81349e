"""Roles instantiated once per chain or coin declare their settings once per instance and
document them.

For each such role: every instance (vars/<instance>.yml) has the same keys, each key is an
option `<role>_<key>` of meta/argument_specs.yml (without a default: the instance values live
in vars/), every default of defaults/main.yml has a spec with the same value, and the README's
generated table lists every variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
INSTANCES = {
    "chain_node": ("bitcoin", "azcoin", "microcurrency"),
    "stratum_translator": ("btc", "azc"),
}
pytestmark = pytest.mark.parametrize("role", sorted(INSTANCES))


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def options(role: str) -> dict[str, Any]:
    specs = load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]
    data: dict[str, Any] = specs["main"]["options"]
    return data


def instance(role: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = load(ROLES / role / "vars" / f"{name}.yml")[f"__{role}_instance"]
    return data


def test_instances_share_one_set_of_keys_and_each_key_has_a_spec(role: str) -> None:
    names = INSTANCES[role]
    keys = set(instance(role, names[0]))
    for name in names:
        assert set(instance(role, name)) == keys, name
    specs = options(role)
    assert sorted(k for k in keys if f"{role}_{k}" not in specs) == []
    for key in keys:
        spec = specs[f"{role}_{key}"]
        assert "default" not in spec, key  # instance values live in vars/<instance>.yml
        assert spec.get("description"), key


def test_defaults_and_specs_agree(role: str) -> None:
    defaults = load(ROLES / role / "defaults" / "main.yml")
    specs = options(role)
    for name, value in defaults.items():
        assert name.startswith(f"{role}_"), name
        assert specs[name]["default"] == value, name
    for name in specs:
        assert name.startswith(f"{role}_"), name


def test_readme_lists_every_variable(role: str) -> None:
    readme = (ROLES / role / "README.md").read_text()
    table = readme.split("<!-- BEGIN VARIABLES")[1].split("<!-- END VARIABLES -->")[0]
    missing = [
        name
        for name in options(role)
        if f"| `{name}` |" not in table and f"| `{name.removeprefix(role + '_')}` |" not in table
    ]
    assert missing == []
