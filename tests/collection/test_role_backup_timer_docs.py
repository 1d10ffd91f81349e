"""The backup_timer role's variables are documented in one place and the README follows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "backup_timer"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_defaults_and_argument_specs_agree() -> None:
    defaults = load(ROLE / "defaults" / "main.yml")
    specs = load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]
    options = specs["main"]["options"]
    assert sorted(set(defaults) ^ set(options)) == []
    for name, option in options.items():
        assert name.startswith("backup_timer_"), name
        assert option.get("description"), name
        if "default" in option:
            assert option["default"] == defaults[name], name
    assert set(specs["run"]["options"]) <= set(defaults)


def test_readme_lists_every_variable() -> None:
    readme = (ROLE / "README.md").read_text()
    table = readme.split("<!-- BEGIN VARIABLES")[1].split("<!-- END VARIABLES -->")[0]
    options = load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    listed = [line.split("`")[1] for line in table.splitlines() if line.startswith("| `")]
    assert listed == list(options)


def test_the_timer_runs_the_job_that_backup_yml_runs() -> None:
    service = (ROLE / "templates" / "scnode-backup.service.j2").read_text()
    nightly = (ROLE / "templates" / "nightly.yml.j2").read_text()
    playbook = (ROLE.parents[1] / "playbooks" / "backup.yml").read_text()
    assert "nightly.yml" in service and "Type=oneshot" in service
    for text in (nightly, playbook):
        assert "name: satoshiware.scnode.backup_timer" in text and "tasks_from: run" in text
