"""The stratum_translator role's settings are declared once per instance and documented.

Every instance (vars/<instance>.yml) has the same keys, each key is an option
`stratum_translator_<key>` of meta/argument_specs.yml, every default has a spec with the same value,
and the README's generated tables list them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "stratum_translator"
INSTANCES = ("btc", "azc")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def options() -> dict[str, Any]:
    data: dict[str, Any] = load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"][
        "options"
    ]
    return data


def instance(name: str) -> dict[str, Any]:
    data: dict[str, Any] = load(ROLE / "vars" / f"{name}.yml")["__stratum_translator_instance"]
    return data


def test_instances_share_one_set_of_keys_and_each_key_has_a_spec() -> None:
    keys = set(instance("btc"))
    for name in INSTANCES:
        assert set(instance(name)) == keys, name
    specs = options()
    assert sorted(k for k in keys if f"stratum_translator_{k}" not in specs) == []
    for key in keys:
        spec = specs[f"stratum_translator_{key}"]
        assert "default" not in spec, key  # instance values live in vars/<instance>.yml
        assert spec.get("description"), key


def test_defaults_and_specs_agree() -> None:
    defaults = load(ROLE / "defaults" / "main.yml")
    specs = options()
    for name, value in defaults.items():
        assert name.startswith("stratum_translator_"), name
        assert specs[name]["default"] == value, name
    for name in specs:
        assert name.startswith("stratum_translator_"), name


def test_readme_lists_every_variable() -> None:
    readme = (ROLE / "README.md").read_text()
    table = readme.split("<!-- BEGIN VARIABLES")[1].split("<!-- END VARIABLES -->")[0]
    missing = [
        name
        for name in options()
        if f"| `{name}` |" not in table
        and f"| `{name.removeprefix('stratum_translator_')}` |" not in table
    ]
    assert missing == []
