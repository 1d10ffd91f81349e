"""scnode_core.keyfile: a client follows its key file when the rotation job rewrites it, and a
file missing or empty for a moment keeps the key last read (said once, never showing a key)."""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from pathlib import Path

import pytest

from scnode_core.keyfile import KeyFileError, KeySource, key_source


def new_key() -> str:
    return f"scnk_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"


def replace(path: Path, key: str) -> None:
    """Write the key file the way the api_key module does: temp file, then rename over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    Path(tmp).replace(path)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "chain-api-bitcoin.key"
    path.write_text(new_key() + "\n", encoding="utf-8")
    return path


def test_a_key_file_replaced_by_rename_is_followed(key_file: Path) -> None:
    first = key_file.read_text().strip()
    source = KeySource.from_file(key_file)
    assert source.current() == first
    second, third = new_key(), new_key()
    replace(key_file, second)
    assert source.current() == second
    replace(key_file, third)
    assert source.current() == third
    assert source.current() == third


def test_a_same_size_rewrite_in_place_is_followed(key_file: Path) -> None:
    source = KeySource.from_file(key_file)
    before = key_file.stat()
    second = new_key()
    assert len(second) == len(source.current())  # same size, same inode: only mtime differs
    key_file.write_text(second + "\n", encoding="utf-8")
    os.utime(key_file, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    assert key_file.stat().st_ino == before.st_ino and key_file.stat().st_size == before.st_size
    assert source.current() == second


def test_refresh_reads_a_rewrite_the_stat_does_not_show(key_file: Path) -> None:
    # two writes within one tick of the file system clock: inode, size and mtime all unchanged
    source = KeySource.from_file(key_file)
    first = source.current()
    before = key_file.stat()
    second = new_key()
    key_file.write_text(second + "\n", encoding="utf-8")
    os.utime(key_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert source.current() == first
    assert source.refresh() == second
    assert source.current() == second


def test_a_file_missing_for_a_moment_keeps_the_last_key_and_warns_once(
    key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = key_file.read_text().strip()
    source = KeySource.from_file(key_file)
    key_file.unlink()
    with caplog.at_level(logging.WARNING, logger="scnode_core.keyfile"):
        assert source.current() == first
        assert source.current() == first
        assert source.refresh() == first
    assert len(caplog.records) == 1
    assert str(key_file) in caplog.text and "keeping the key last read" in caplog.text
    second = new_key()
    replace(key_file, second)
    assert source.current() == second
    # a later bad spell is reported again
    caplog.clear()
    key_file.unlink()
    with caplog.at_level(logging.WARNING, logger="scnode_core.keyfile"):
        assert source.current() == second
    assert len(caplog.records) == 1
    assert first not in caplog.text and second not in caplog.text


def test_an_empty_file_keeps_the_last_key_until_it_holds_one(
    key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = key_file.read_text().strip()
    source = KeySource.from_file(key_file)
    before = key_file.stat()
    second = new_key()
    with caplog.at_level(logging.WARNING, logger="scnode_core.keyfile"):
        key_file.write_text("\n", encoding="utf-8")  # truncated, not yet written
        assert source.current() == first
        # blank (whitespace only) and then the key, both with one size and one mtime: the key
        # is still read, because a file without a key is never remembered as seen
        key_file.write_text(" " * len(second) + "\n", encoding="utf-8")
        assert source.current() == first
        blank = key_file.stat()
        key_file.write_text(second + "\n", encoding="utf-8")
        os.utime(key_file, ns=(blank.st_atime_ns, blank.st_mtime_ns))
        assert key_file.stat().st_size == blank.st_size
        assert source.current() == second
    assert [r.getMessage() for r in caplog.records] == [
        f"API key file {key_file}: empty; keeping the key last read"
    ]
    assert key_file.stat().st_ino == before.st_ino


def test_a_file_without_a_key_at_start_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"missing\.key: No such file"):
        KeySource.from_file(tmp_path / "missing.key")
    empty = tmp_path / "empty.key"
    empty.write_text(" \n")
    with pytest.raises(KeyFileError, match=r"empty\.key is empty"):
        KeySource.from_file(empty)
    # with the key the settings read at start, a missing file is only a warning
    assert KeySource.from_file(tmp_path / "missing.key", initial="k1").current() == "k1"


def test_the_key_never_shows_in_repr(key_file: Path) -> None:
    key = key_file.read_text().strip()
    followed = KeySource.from_file(key_file)
    fixed = key_source("fixed-" + key)
    assert key not in repr(followed) and str(key_file) in repr(followed)
    assert key not in repr(fixed) and repr(fixed) == "KeySource(fixed)"
    assert fixed.current() == fixed.refresh() == "fixed-" + key
    assert fixed.path is None and followed.path == key_file
    assert key_source(followed) is followed
