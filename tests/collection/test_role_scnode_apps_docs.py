"""The scnode_apps role's variables are documented in one place and the README follows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "scnode_apps"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_defaults_and_argument_specs_agree() -> None:
    defaults = load(ROLE / "defaults" / "main.yml")
    options = load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(set(defaults) - set(options)) == []
    assert sorted(set(options) - set(defaults)) == []
    for name, option in options.items():
        assert name.startswith("scnode_apps_"), name
        assert option.get("description"), name
        assert option["default"] == defaults[name], name


def test_readme_lists_every_variable() -> None:
    readme = (ROLE / "README.md").read_text()
    table = readme.split("<!-- BEGIN VARIABLES")[1].split("<!-- END VARIABLES -->")[0]
    options = load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert [name for name in options if f"| `{name}` |" not in table] == []


def test_unit_hardening_overlay_keeps_the_baseline_strict() -> None:
    overlay = load(ROLE / "defaults" / "main.yml")["scnode_apps_systemd_hardening"]
    assert overlay["ProtectSystem"] == "strict"
    assert overlay["NoNewPrivileges"] is True
    assert overlay["CapabilityBoundingSet"] == ""
