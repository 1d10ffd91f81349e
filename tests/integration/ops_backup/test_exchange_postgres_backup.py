"""wallet_backup kind=exchange on PostgreSQL: the exchange's migrated database is dumped
(pg_dump, custom format, checked with pg_restore --list), encrypted, and restored into another
database; a database that has tables is only replaced with force."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pyrage  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from scnode_exchange.db import make_engine, make_sessionmaker, upgrade
from scnode_exchange.ledger import AssetSpec, Ledger
from tests.integration.ops_backup.module_runner import run_module

POSTGRES_URL = os.environ.get("SCNODE_TEST_POSTGRES_URL", "")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not POSTGRES_URL, reason="SCNODE_TEST_POSTGRES_URL is not set (tests/postgres.sh)"
    ),
]


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    """Two throwaway databases on the test server: (source, target)."""
    admin = make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    names = ["scnode_backup_" + secrets.token_hex(6) for _ in range(2)]
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        urls = [
            make_url(POSTGRES_URL).set(database=n).render_as_string(hide_password=False)
            for n in names
        ]
        yield urls[0], urls[1]
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _assets(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(str(row[0]) for row in conn.execute(text("SELECT code FROM assets")))
    finally:
        engine.dispose()


def test_exchange_database_restored_into_another_database(
    databases: tuple[str, str], tmp_path: Path
) -> None:
    source, target = databases
    upgrade(source)
    engine = make_engine(source)
    with make_sessionmaker(engine).begin() as session:
        Ledger(session).ensure_assets([AssetSpec("MICRO", "Test microcurrency", 8, "musat")])
    engine.dispose()
    identity = pyrage.x25519.Identity.generate()
    key_file = tmp_path / "owner.agekey"
    key_file.write_text(str(identity) + "\n")

    made = run_module(
        "wallet_backup",
        {
            "kind": "exchange",
            "database_url": source,
            "backup_dir": str(tmp_path / "backups"),
            "recipients": [str(identity.to_public())],
        },
    )
    assert made.get("changed") is True, made
    manifest = json.loads(Path(made["manifest_file"]).read_text())
    assert manifest["exchange"] == {"database": "postgresql"}
    assert [f["name"] for f in manifest["files"]] == ["exchange.pgdump"]

    args = {"manifest": made["manifest_file"], "identity_file": str(key_file)}
    restored = run_module("wallet_restore", {**args, "database_url": target})
    assert restored.get("changed") is True, restored
    assert "MICRO" in _assets(target) and _assets(target) == _assets(source)

    refused = run_module("wallet_restore", {**args, "database_url": target})
    assert refused.get("failed") and "already has" in refused["msg"]
    forced = run_module("wallet_restore", {**args, "database_url": target, "force": True})
    assert forced.get("changed") is True, forced
    assert _assets(target) == _assets(source)
