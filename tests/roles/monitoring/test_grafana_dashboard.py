"""The monitoring role's optional Grafana dashboard (roles/monitoring/files/grafana/scnode.json):
it imports into any Grafana (a ``DS_PROMETHEUS`` datasource input used by every panel) and every
series its PromQL names is one the SC Node really exports — the apps' registries (built here from
the apps' own metric classes), the role's textfile script's output, or the node exporter's and
Prometheus's own — so a renamed metric cannot leave a panel silently empty."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from scnode_chain_api.metrics import ChainMetrics
from scnode_exchange.api.runtime import ExchangeMetrics
from scnode_exchange.solvency.service import SolvencyMetrics
from scnode_lightning_api.metrics import LightningMetrics
from scnode_stratum.app import StratumCollector

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "monitoring"
DASHBOARD = ROLE / "files" / "grafana" / "scnode.json"
SCRIPT = ROLE / "files" / "scnode-textfile-metrics"
PROMTOOL = shutil.which("promtool")
DS_UID = "${DS_PROMETHEUS}"
# series of the node exporter (node_*) and of Prometheus itself
EXTERNAL = re.compile(r"node_[a-zA-Z0-9_]+|up|ALERTS|ALERTS_FOR_STATE")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
KEYWORDS |= {"group_left", "group_right", "inf", "nan", "Inf", "NaN"}


def registry_series(registry: CollectorRegistry) -> set[str]:
    """The series names a registry serves (label-less families included)."""
    names: set[str] = set()
    for family in registry.collect():
        names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def stratum_series() -> set[str]:
    """The stratum API's custom collector, fed one worker and a monitoring cross-check."""
    counters = SimpleNamespace(by_kind={"share": 3}, unknown=0)
    tailer = SimpleNamespace(
        lines_total=3,
        parser=SimpleNamespace(counters=counters),
        lag_bytes=lambda: 0,
        last_line_ts=1.0,
        rotations=0,
        truncations=0,
        gaps=0,
    )
    entry = {"diff_sum": 1.0, "submitted": 1, "accepted": 1, "rejected": 0}
    store = SimpleNamespace(totals=lambda since: {"alice.rig1": entry})
    settings = SimpleNamespace(name="btc", work_scale=1.0)
    cross_check = SimpleNamespace(up=True, corrections=0)
    registry = CollectorRegistry()
    registry.register(StratumCollector(settings, store, tailer, cross_check))  # type: ignore[arg-type]
    return registry_series(registry)


def textfile_series(tmp_path: Path) -> set[str]:
    backups, keys = tmp_path / "backups", tmp_path / "keys"
    backups.mkdir()
    keys.mkdir()
    (backups / "chain-bitcoin-wallet-20261125T030000Z.manifest.json").write_text("{}")
    (keys / "exchange-dashboard.token").write_text("k")
    out = tmp_path / "scnode.prom"
    subprocess.run(
        [
            *(sys.executable, str(SCRIPT), "--backup-dir", str(backups), "--keys-dir", str(keys)),
            *("--rotation-period", "691200", "--output", str(out)),
        ],
        check=True,
    )
    return {s.name for f in text_string_to_metric_families(out.read_text()) for s in f.samples}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    exchange = ExchangeMetrics()
    SolvencyMetrics(exchange.registry)  # the solvency check registers on the exchange's registry
    names = registry_series(exchange.registry)
    names |= registry_series(ChainMetrics("bitcoin").registry)
    names |= registry_series(LightningMetrics().registry)
    names |= stratum_series()
    names |= textfile_series(tmp_path_factory.mktemp("textfile"))
    return names


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def query_panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def exprs() -> list[str]:
    return [t["expr"] for p in query_panels() for t in p["targets"]]


def series_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, keywords, labels)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    e = re.sub(r"\$\{?\w+\}?", "", e)  # Grafana variables ($__rate_interval)
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges and subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    words = re.findall(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e)
    return {w for w, call in words if not call and w not in KEYWORDS}


def test_series_names_finds_metrics_not_functions_labels_or_keywords() -> None:
    expr = (
        'sum by (instance, result) (rate(foo_total{a="b(c)"}[$__rate_interval])) * 60 '
        "or on(job) group_left(chain) bar_info offset 5m > 1e3 and time() - baz"
    )
    assert series_names(expr) == {"foo_total", "bar_info", "baz"}


def test_dashboard_is_an_importable_grafana_model() -> None:
    d = dashboard()
    assert d["schemaVersion"] >= 38
    assert d["uid"] == "scnode-overview"
    assert d["id"] is None  # Grafana assigns it on import
    inputs = d["__inputs"]
    assert [(i["name"], i["type"], i["pluginId"]) for i in inputs] == [
        ("DS_PROMETHEUS", "datasource", "prometheus")
    ]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    assert len(query_panels()) >= 20


def test_every_panel_queries_the_input_datasource() -> None:
    for p in query_panels():
        assert p["datasource"] == {"type": "prometheus", "uid": DS_UID}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == {"type": "prometheus", "uid": DS_UID}, p["title"]
            assert t["expr"].strip(), p["title"]


def test_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for p in dashboard()["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, p["title"]
        taken |= cells


def test_every_metric_the_dashboard_uses_is_exported(exported: set[str]) -> None:
    used = set().union(*(series_names(e) for e in exprs()))
    missing = {m for m in used if m not in exported and not EXTERNAL.fullmatch(m)}
    assert missing == set(), "panels query series nobody exports"
    # what an owner watches is all there: chains, Lightning, mining, solvency, disks, backups, keys
    for needed in (
        "scnode_chain_blocks",
        "scnode_chain_headers",
        "scnode_chain_daemon_up",
        "scnode_lightning_channel_balance_msat",
        "scnode_lightning_channel_normal",
        "scnode_stratum_hashrate_hps",
        "scnode_exchange_solvency_margin",
        "node_filesystem_avail_bytes",
        "scnode_backup_last_success_timestamp_seconds",
        "scnode_api_key_rotated_timestamp_seconds",
        "up",
    ):
        assert needed in used


def test_the_check_catches_a_metric_nobody_exports(exported: set[str]) -> None:
    used = series_names('rate(scnode_exchange_withdrawals_total{asset="btc"}[5m])')
    assert used == {"scnode_exchange_withdrawals_total"}
    assert used - exported == used


@pytest.mark.skipif(
    PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed"
)
def test_every_expr_parses_with_promtool(tmp_path: Path) -> None:
    """Each expr as a recording rule, so promtool's PromQL parser checks it."""
    assert PROMTOOL is not None
    rules = [
        {"record": f"dashboard:expr{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(exprs())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout
