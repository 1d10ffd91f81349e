"""rotate_api_keys.yml --check: says which keys would rotate and changes no file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.ops_apikeys.rotation import (
    REPO,
    ROTATE_TASK,
    Layout,
    make_hosts,
    rotate,
    write_inventory,
)

pytestmark = pytest.mark.skipif(
    not (REPO / "collections" / "ansible_collections" / "satoshiware" / "scnode").exists(),
    reason="the collections/ link is missing: run `make collection-link`",
)


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix != ".yml"
    }


def test_check_mode_reports_the_rotations_and_writes_nothing(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "hosts")
    make_hosts(layout)
    inventory = write_inventory(layout, api_port=1)
    before = snapshot(layout.root)

    report = rotate(inventory, tmp_path, check=True)

    results = {r["item"]["item"]["name"]: r for r in report["chain1.test"][ROTATE_TASK]["results"]}
    assert set(results) == {"chain1-read", "chain1-exchange"}
    assert all(r["changed"] and r["reason"].startswith("the key is") for r in results.values())
    assert snapshot(layout.root) == before
