"""The owner's components survey without a network: a component that is not configured, one
whose port does not answer (down, never an exception), a broken components file, the backup
age and API key ages with their warnings."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scnode_core.apikeys import ApiKeyStore, generate
from scnode_dashboard import components
from simnet.pytest_chain import free_port


def by_kind(found: list[components.Component]) -> dict[str, components.Component]:
    return {c.kind: c for c in found}


def test_not_configured_down_and_disk(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    listing = tmp_path / "components.json"
    listing.write_text(json.dumps([
        {"name": "Bitcoin chain API", "kind": "chain_api", "url": dead, "key": "k"},
        {"name": "Lightning API", "kind": "lightning_api", "url": ""},
        {"name": "Data disk", "kind": "disk", "path": str(tmp_path)},
    ]))  # fmt: skip
    found, error = asyncio.run(components.survey(dead, listing, None, 36, [], 180))
    assert error == ""
    kinds = by_kind(found)
    assert kinds["exchange"].state == components.DOWN
    assert kinds["chain_api"].state == components.DOWN
    assert "no answer" in kinds["chain_api"].warnings[0]
    assert kinds["lightning_api"].state == components.NOT_CONFIGURED
    assert kinds["stratum"].state == components.NOT_CONFIGURED  # missing from the file
    assert kinds["disk"].state == components.UP
    assert any(label == "free" for label, _ in kinds["disk"].facts)
    assert kinds["backup"].state == kinds["api_keys"].state == components.NOT_CONFIGURED


def test_a_broken_components_file_is_reported_not_raised(tmp_path: Path) -> None:
    listing = tmp_path / "components.json"
    listing.write_text("{not json")
    found, error = asyncio.run(
        components.survey(f"http://127.0.0.1:{free_port()}", listing, None, 36, [], 180)
    )
    assert "components file" in error
    assert by_kind(found)["chain_api"].state == components.NOT_CONFIGURED


def test_backup_age_and_key_ages_warn(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    empty = components.backup(backups, 36, time.time())
    assert empty.warnings == ["no backup yet"]
    archive = backups / "bitcoin-wallet.tar.age"
    archive.write_bytes(b"x")
    two_days_ago = time.time() - 48 * 3600
    os.utime(archive, (two_days_ago, two_days_ago))
    old = components.backup(backups, 36, time.time())
    assert old.state == components.UP and old.warnings == ["last backup older than 36 h"]
    assert not components.backup(backups, 72, time.time()).warnings

    keys_file = tmp_path / "chain-api-btc" / "api-keys.json"
    keys_file.parent.mkdir()
    fresh = generate({"read"}, "fresh").record
    stale = generate({"send"}, "stale").record
    stale = type(stale)(
        stale.key_id, stale.secret_sha256, stale.scopes, stale.name,
        datetime.now(UTC) - timedelta(days=400),
    )  # fmt: skip
    ApiKeyStore([fresh, stale]).save(keys_file)
    keys = components.api_keys([keys_file, tmp_path / "missing.json"], 180, time.time())
    assert keys.state == components.UP
    labels = dict(keys.facts)
    assert labels["chain-api-btc/fresh"].startswith("0 days old (read)")
    assert labels["chain-api-btc/stale"].startswith("400 days old (send)")
    assert any("stale: older than 180 days" in w for w in keys.warnings)
    assert not any("fresh" in w for w in keys.warnings)
