"""scnode_core.keyring: the apps follow their keys file (rotation without restart) and a bad
rotation never locks every client out."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from scnode_core.apikeys import ApiKeyStore, generate
from scnode_core.keyring import KeyRing


def test_a_second_write_within_one_clock_tick_is_seen(tmp_path: Path) -> None:
    first, second = generate({"read"}), generate({"read"})
    path = tmp_path / "keys.json"
    ApiKeyStore([first.record]).save(path)
    os.utime(path, ns=(10**18, 10**18))
    ring = KeyRing(path)
    assert ring().authenticate(first.token) is not None
    ApiKeyStore([first.record, second.record]).save(path)
    os.utime(path, ns=(10**18, 10**18))  # same mtime as before: only inode/size differ
    assert ring().authenticate(second.token) is not None


def test_a_broken_file_keeps_the_keys_last_read_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = generate({"read"})
    path = tmp_path / "keys.json"
    ApiKeyStore([key.record]).save(path)
    ring = KeyRing(path)
    path.write_text("{ half written")
    with caplog.at_level(logging.ERROR, logger="scnode_core.keyring"):
        assert ring().authenticate(key.token) is not None
        assert ring().authenticate(key.token) is not None
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "not reloaded" in caplog.records[0].message


def test_required_file_missing_or_broken_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        KeyRing(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[]x")
    with pytest.raises(ValueError):
        KeyRing(bad)


def test_optional_file_appears_later(tmp_path: Path) -> None:
    path = tmp_path / "owner-keys.json"
    ring = KeyRing(path, required=False)
    key = generate({"owner"})
    assert ring().authenticate(key.token) is None
    ApiKeyStore([key.record]).save(path)
    assert ring().authenticate(key.token) is not None
