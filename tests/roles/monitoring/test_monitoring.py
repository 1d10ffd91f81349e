"""The monitoring role's alert rules (promtool unit tests), textfile script and Prometheus
configuration template."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "monitoring"
RULES = ROLE / "files" / "scnode_alerts.yml"
SCRIPT = ROLE / "files" / "scnode-textfile-metrics"
HERE = Path(__file__).resolve().parent
UNIT_TESTS = ["rules_test.yml", "rules_test_long.yml"]
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed"
)


def alert_names() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r["alert"] for g in groups for r in g["rules"] if "alert" in r]


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    assert PROMTOOL is not None
    out = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in out.stdout


@needs_promtool
@pytest.mark.parametrize("unit_tests", UNIT_TESTS)
def test_rules_unit_tests(unit_tests: str, tmp_path: Path) -> None:
    assert PROMTOOL is not None
    shutil.copy(RULES, tmp_path / "scnode_alerts.yml")
    shutil.copy(HERE / unit_tests, tmp_path / unit_tests)
    out = subprocess.run(
        [PROMTOOL, "test", "rules", unit_tests],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for name in UNIT_TESTS:
        for case in yaml.safe_load((HERE / name).read_text())["tests"]:
            for check in case["alert_rule_test"]:
                (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = set(alert_names())
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested staying quiet"
    assert (firing | quiet) - names == set(), "tests of alerts that do not exist"


def test_rule_metrics_are_exported_by_the_apps_or_the_script() -> None:
    """A renamed metric in an app would silently disable its alert: every scnode_* series the
    rules use must appear in the apps' sources or in the role's textfile script."""
    exprs = " ".join(
        str(r["expr"]) for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
    )
    used = set(re.findall(r"\bscnode_[a-z_]+", exprs))
    assert len(used) >= 15
    sources = SCRIPT.read_text() + "".join(
        p.read_text() for p in (REPO / "apps").rglob("*.py") if "test" not in p.name
    )

    def exported(m: str) -> bool:  # a quoted name (apps), or a line of the script's output
        return f'"{m}"' in sources or f"{m}{{" in sources or f'"{m} {{' in sources

    missing = {m for m in used if not exported(m)}
    assert missing == set()


def run_script(tmp_path: Path, backups: Path, keys: Path) -> dict[str, list[Any]]:
    out = tmp_path / "out" / "scnode.prom"
    out.parent.mkdir(exist_ok=True)
    subprocess.run(
        [
            *(sys.executable, str(SCRIPT), "--backup-dir", str(backups), "--keys-dir", str(keys)),
            *("--rotation-period", "691200", "--output", str(out)),
        ],
        check=True,
    )
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in out.parent.iterdir()] == ["scnode.prom"]  # no temporary left
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(out.read_text()):
        for s in family.samples:
            samples.setdefault(s.name, []).append(s)
    return samples


def test_textfile_script_reports_newest_backup_per_subject_and_key_ages(tmp_path: Path) -> None:
    backups, keys = tmp_path / "backups", tmp_path / "keys"
    backups.mkdir()
    keys.mkdir()
    now = time.time()
    files = {
        "chain-bitcoin-wallet-20261124T030000Z.manifest.json": now - 2 * 86400,
        "chain-bitcoin-wallet-20261125T030000Z.manifest.json": now - 86400,
        "chain-bitcoin-wallet-20261125T030000Z.tar.age": now - 10,  # not a manifest
        "lightning-cln-20261125T030000Z.manifest.json": now - 3600,
    }
    for name, mtime in files.items():
        (backups / name).write_text("{}")
        os.utime(backups / name, (mtime, mtime))
    for name, mtime in {"chain-api-bitcoin-read.token": now - 9 * 86400, "x.txt": now}.items():
        (keys / name).write_text("k")
        os.utime(keys / name, (mtime, mtime))

    s = run_script(tmp_path, backups, keys)
    last = {x.labels["backup"]: x.value for x in s["scnode_backup_last_success_timestamp_seconds"]}
    assert last == pytest.approx(
        {"chain-bitcoin-wallet": now - 86400, "lightning-cln": now - 3600}, abs=0.01
    )
    assert s["scnode_backup_manifests"][0].value == 3
    assert s["scnode_backup_dir_present"][0].value == 1
    rotated = s["scnode_api_key_rotated_timestamp_seconds"]
    assert [(x.labels["key"], round(x.value)) for x in rotated] == [
        ("chain-api-bitcoin-read", round(now - 9 * 86400))
    ]
    assert s["scnode_api_key_rotation_period_seconds"][0].value == 691200
    assert abs(s["scnode_textfile_metrics_timestamp_seconds"][0].value - time.time()) < 60


def test_textfile_script_without_backup_or_keys_dir(tmp_path: Path) -> None:
    s = run_script(tmp_path, tmp_path / "none", tmp_path / "nokeys")
    assert s["scnode_backup_dir_present"][0].value == 0
    assert s["scnode_backup_manifests"][0].value == 0
    assert "scnode_backup_last_success_timestamp_seconds" not in s
    assert "scnode_api_key_rotated_timestamp_seconds" not in s


def render(template: str, **overrides: Any) -> str:
    env = jinja2.Environment(  # noqa: S701 -- renders YAML, not HTML
        loader=jinja2.FileSystemLoader(ROLE / "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["to_json"] = json.dumps
    variables: dict[str, Any] = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    variables["ansible_managed"] = "Ansible managed"
    variables.update(overrides)
    return env.get_template(template).render(**variables)


@needs_promtool
def test_prometheus_config_scrapes_node_exporter_and_app_targets(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    text = render(
        "prometheus.yml.j2",
        monitoring_scrape_targets=[
            {"job": "chain_api_bitcoin", "targets": ["127.0.0.1:8401"]},
            {
                "job": "exchange",
                "targets": ["127.0.0.1:8410"],
                "credentials_file": "/etc/prometheus/exchange-metrics.key",
            },
        ],
    )
    config = yaml.safe_load(text)
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert list(jobs) == ["prometheus", "node", "chain_api_bitcoin", "exchange"]
    assert jobs["node"]["static_configs"][0]["targets"] == ["127.0.0.1:9100"]
    assert jobs["exchange"]["authorization"]["credentials_file"].endswith("exchange-metrics.key")
    assert "authorization" not in jobs["chain_api_bitcoin"]
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    (tmp_path / "prometheus.yml").write_text(text)
    out = subprocess.run(
        [PROMTOOL, "check", "config", "--syntax-only", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_defaults_argument_specs_and_readme_agree() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    options = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"][
        "main"
    ]["options"]
    assert sorted(set(defaults) ^ set(options)) == []
    for name, option in options.items():
        assert option.get("description"), name
        assert option["default"] == defaults[name], name
    readme = (ROLE / "README.md").read_text()
    table = readme.split("<!-- BEGIN VARIABLES")[1].split("<!-- END VARIABLES -->")[0]
    listed = [line.split("`")[1] for line in table.splitlines() if line.startswith("| `")]
    assert listed == list(options)
    for alert in alert_names():
        assert f"| `{alert}` |" in readme, alert
