"""Pieces of the exchange, mining and token pages that need no running stack: upstream's worker
states, typed integers, units, and the vendored chart library matching its npm pin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scnode_dashboard.mining import hashrate_text, histogram_svg
from scnode_dashboard.trading import lot_text, parse_count
from scnode_stratum.app import worker_state

DASHBOARD = Path(__file__).resolve().parents[4] / "apps" / "scnode_dashboard"


@pytest.mark.parametrize(
    ("age", "state"),
    [(0, "ok"), (90, "ok"), (90.5, "low"), (300, "low"), (301, "off"), (1800, "off"),
     (1801, "dis")],
)  # fmt: skip
def test_worker_states_follow_upstreams_thresholds(age: float, state: str) -> None:
    assert worker_state(1_000_000.0 - age, 1_000_000.0) == state


def test_a_worker_without_shares_is_disconnected() -> None:
    assert worker_state(None, 1_000_000.0) == "dis"


def test_typed_counts_take_separators_and_refuse_the_rest() -> None:
    assert parse_count(" 1,000 ", "price") == 1000
    assert parse_count("2_500", "price") == 2500
    for bad in ("", "0", "-5", "1.5", "1e3", "abc"):
        with pytest.raises(ValueError, match="whole number"):
            parse_count(bad, "price")


def test_units_and_hashrates_read_well() -> None:
    assert lot_text(1_000_000, 8) == "0.01"
    assert lot_text(100_000_000, 8) == "1"
    assert hashrate_text(950) == "950 H/s"
    assert hashrate_text(1_500_000_000_000) == "1.5 TH/s"


def test_histogram_bars_scale_to_the_highest_bucket() -> None:
    drawn = histogram_svg([(0, 0.0), (900, 50.0), (1800, 100.0)])
    heights = [b["h"] for b in drawn["bars"]]
    assert heights[0] == 0 and heights[2] == drawn["height"] - 20 and heights[1] == heights[2] / 2


def test_the_vendored_chart_library_is_the_pinned_npm_release() -> None:
    """static/vendor holds exactly what frontend/package-lock.json pins (npm ci && npm run
    build rebuilds it; npm run check compares it byte for byte), with its licence."""
    lock = json.loads((DASHBOARD / "frontend" / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/lightweight-charts"]
    assert pinned["integrity"].startswith("sha512-")
    vendor = DASHBOARD / "static" / "vendor"
    head = (vendor / "lightweight-charts.standalone.production.js").read_text()[:300]
    assert f"Lightweight Charts™ v{pinned['version']}" in head
    assert "Apache License" in (vendor / "LICENSE.lightweight-charts.txt").read_text()
    assert pinned["version"] in (vendor / "NOTICE.txt").read_text()
