"""The common role's variables are documented in one place and the README follows it.

meta/argument_specs.yml is the source of truth (STYLE.md): every default has a spec, every
spec of the main entry point a default (or a documented one), and the README's variable table
lists each of them. Every variable carries the role's prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "common"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_defaults_and_argument_specs_agree() -> None:
    defaults = load(ROLE / "defaults" / "main.yml")
    specs = load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]
    options = specs["main"]["options"]
    assert sorted(set(defaults) - set(options)) == []
    assert sorted(set(options) - set(defaults)) == []
    for name, option in options.items():
        assert name.startswith("common_"), name
        assert option.get("description"), name
        if "default" in option:
            assert option["default"] == defaults[name], name
    for name in specs["firewall_opening"]["options"]:
        assert name.startswith("common_"), name


def test_readme_lists_every_variable() -> None:
    readme = (ROLE / "README.md").read_text()
    table = readme.split("<!-- BEGIN VARIABLES")[1].split("<!-- END VARIABLES -->")[0]
    options = load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    missing = [name for name in options if f"| `{name}` |" not in table]
    assert missing == []
