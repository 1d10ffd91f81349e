"""The api_key_rotation role's variables are documented in one place and the README follows it
(meta/argument_specs.yml is the source of truth, STYLE.md); its timer units are valid systemd
units as rendered with the defaults."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "api_key_rotation"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_defaults_and_argument_specs_agree() -> None:
    defaults = load(ROLE / "defaults" / "main.yml")
    specs = load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]
    for entry_point in ("main", "rotate"):
        options = specs[entry_point]["options"]
        assert sorted(set(defaults) ^ set(options)) == [], entry_point
        for name, option in options.items():
            assert name.startswith("api_key_rotation_"), name
            assert option.get("description"), name
            assert option["default"] == defaults[name], name


def test_readme_lists_every_variable() -> None:
    readme = (ROLE / "README.md").read_text()
    table = readme.split("<!-- BEGIN VARIABLES")[1].split("<!-- END VARIABLES -->")[0]
    options = load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert [name for name in options if f"| `{name}` |" not in table] == []


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_units_render_to_what_systemd_accepts(tmp_path: Path) -> None:
    values = {**load(ROLE / "defaults" / "main.yml"), "ansible_managed": "managed"}
    values["api_key_rotation_ansible_playbook"] = shutil.which("true")
    values["api_key_rotation_extra_args"] = ["-e", "api_key_rotation_max_age=518400"]
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701
    env.filters["quote"] = lambda text: shlex.quote(str(text))  # Ansible's quote filter
    for suffix in ("service", "timer"):
        template = env.from_string(
            (ROLE / "templates" / f"api-key-rotation.{suffix}.j2").read_text()
        )
        (tmp_path / f"scnode-api-key-rotation.{suffix}").write_text(template.render(values))
    service = (tmp_path / "scnode-api-key-rotation.service").read_text()
    assert (
        f"ExecStart={values['api_key_rotation_ansible_playbook']} -i /etc/ansible/hosts"
        " satoshiware.scnode.rotate_api_keys -e api_key_rotation_max_age=518400" in service
    )
    timer = (tmp_path / "scnode-api-key-rotation.timer").read_text()
    assert "OnCalendar=weekly" in timer and "Persistent=true" in timer
    check = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "scnode-api-key-rotation.timer")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
