"""keytool: what an operator notices — keys that work, files that keep secrets to themselves."""

from __future__ import annotations

import grp
import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scnode_core.apikeys import ApiKeyStore
from scnode_core.keytool import KeyToolError, create, describe, main, revoke


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_writes_hash_only_keys_file_and_0600_token(tmp_path: Path) -> None:
    keys, token_file = tmp_path / "keys.json", tmp_path / "deposit.token"
    assert (
        main(
            [
                "create",
                "--keys-file",
                str(keys),
                "--scope",
                "read",
                "--scope",
                "deposit",
                "--name",
                "exchange",
                "--token-file",
                str(token_file),
            ]
        )
        == 0
    )
    token = token_file.read_text().strip()
    principal = ApiKeyStore.load(keys).authenticate(token)
    assert principal is not None
    assert principal.scopes == {"read", "deposit"} and principal.name == "exchange"
    assert token.rsplit("_", 1)[1] not in keys.read_text()
    assert _mode(keys) == 0o640
    assert _mode(token_file) == 0o600


def test_create_without_token_file_prints_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.json"
    assert main(["create", "--keys-file", str(keys), "--scope", "read"]) == 0
    token = capsys.readouterr().out.strip()
    assert ApiKeyStore.load(keys).authenticate(token) is not None


def test_if_missing_never_regenerates(tmp_path: Path) -> None:
    keys, token_file = tmp_path / "keys.json", tmp_path / "read.token"
    args = [
        "create",
        "--keys-file",
        str(keys),
        "--scope",
        "read",
        "--token-file",
        str(token_file),
        "--if-missing",
    ]
    assert main(args) == 0
    first_token, first_keys = token_file.read_text(), keys.read_text()
    assert main(args) == 0
    assert token_file.read_text() == first_token
    assert keys.read_text() == first_keys


def test_existing_token_file_is_never_overwritten(tmp_path: Path) -> None:
    keys, token_file = tmp_path / "keys.json", tmp_path / "read.token"
    token_file.write_text("someone's key\n")
    with pytest.raises(KeyToolError, match="refusing to overwrite"):
        create(keys, ["read"], token_file=token_file)
    assert token_file.read_text() == "someone's key\n"
    assert not keys.exists()


def test_second_key_keeps_the_first_valid(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    _, first = create(keys, ["read"], name="a")
    _, second = create(keys, ["deposit"], name="b")
    store = ApiKeyStore.load(keys)
    assert len(store) == 2
    assert store.authenticate(first) is not None and store.authenticate(second) is not None


def test_keys_file_keeps_its_group_across_rewrites(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    create(keys, ["read"])
    # root may give any group; another user only one of its own groups
    candidates = [g.gr_gid for g in grp.getgrall()] if os.geteuid() == 0 else os.getgroups()
    target = next((g for g in candidates if g != keys.stat().st_gid), None)
    if target is None:
        pytest.skip("this user is in one group only: no other group to keep")
    os.chown(keys, -1, target)
    create(keys, ["deposit"])
    assert keys.stat().st_gid == target


def test_unknown_group_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyToolError, match="does not exist"):
        create(tmp_path / "keys.json", ["read"], group="no-such-group-scnode")


@pytest.mark.parametrize("scopes", [[], ["READ"], ["read write"], [""]])
def test_bad_scopes_are_refused(tmp_path: Path, scopes: list[str]) -> None:
    with pytest.raises(KeyToolError):
        create(tmp_path / "keys.json", scopes)
    assert not (tmp_path / "keys.json").exists()


def test_revoke_removes_only_that_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    gone, gone_token = create(keys, ["read"], name="old")
    _, kept_token = create(keys, ["read"], name="new")
    assert main(["revoke", "--keys-file", str(keys), gone.key_id]) == 0
    store = ApiKeyStore.load(keys)
    assert store.authenticate(gone_token) is None
    assert store.authenticate(kept_token) is not None
    assert _mode(keys) == 0o640


def test_revoke_unknown_id_fails_and_changes_nothing(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    create(keys, ["read"])
    before = keys.read_text()
    with pytest.raises(KeyToolError, match="no key"):
        revoke(keys, "deadbeef")
    assert keys.read_text() == before


def test_list_shows_ids_scopes_and_age_never_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.json"
    record, token = create(keys, ["deposit", "read"], name="lab")
    capsys.readouterr()
    assert main(["list", "--keys-file", str(keys)]) == 0
    text = capsys.readouterr().out
    assert record.key_id in text and "deposit,read" in text and "lab" in text
    assert token.rsplit("_", 1)[1] not in text and record.secret_sha256 not in text
    assert main(["list", "--keys-file", str(keys), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["id"] == record.key_id and row["scopes"] == ["deposit", "read"]
    assert "sha256" not in row and row["valid"] is True


def test_describe_reports_age_and_expiry() -> None:
    now = datetime(2026, 1, 10, tzinfo=UTC)
    from scnode_core.apikeys import ApiKeyRecord

    old = ApiKeyRecord(
        "0a0a0a0a",
        "0" * 64,
        frozenset({"read"}),
        "old",
        now - timedelta(days=3),
        not_after=now - timedelta(hours=1),
    )
    (row,) = describe([old], now)
    assert row["age"] == "3d" and row["valid"] is False


def test_list_of_missing_file_fails_with_a_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scnode_core.keytool",
            "list",
            "--keys-file",
            str(tmp_path / "nope.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "does not exist" in result.stderr
