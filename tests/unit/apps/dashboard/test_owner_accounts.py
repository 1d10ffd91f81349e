"""Owner accounts in the dashboard's store: ``add-local-user --owner`` makes one (no member
handle to give, a name the exchange's audit can carry), a file from before the role column
gets it with every existing user a member, and the audit page filters and pages."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest

from scnode_dashboard.__main__ import main
from scnode_dashboard.store import MEMBER, OWNER, Store


def env_file(tmp_path: Path) -> Path:
    env = tmp_path / "dashboard.env"
    env.write_text(
        "SCNODE_DASHBOARD_PUBLIC_URL=https://node.example/\n"
        f"SCNODE_DASHBOARD_DATABASE_PATH={tmp_path / 'd.sqlite3'}\n"
        "SCNODE_DASHBOARD_EXCHANGE_API_KEY=k\n"
    )
    return env


def test_add_local_user_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = str(env_file(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
    assert main(["--env-file", env, "add-local-user", "--owner", "olivia"]) == 0
    assert "'olivia' -> owner added" in capsys.readouterr().out
    # a handle and --owner together, or neither, is a usage error
    with pytest.raises(SystemExit):
        main(["--env-file", env, "add-local-user", "--owner", "olivia", "olivia"])
    with pytest.raises(SystemExit):
        main(["--env-file", env, "add-local-user", "olivia"])
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
    assert main(["--env-file", env, "add-local-user", "--owner", "o livia"]) == 2
    store = Store(tmp_path / "d.sqlite3")
    owner = store.local_user("olivia")
    store.close()
    assert owner is not None and owner.is_owner and owner.role == OWNER
    # an exchange handle cannot contain ':', so no member can ever link to the owner's row
    assert owner.member_handle == "owner:olivia"


def test_an_older_file_gets_the_role_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # the users table as it was before owners
        db.execute(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, issuer TEXT,"
            " subject TEXT, username TEXT NOT NULL, member_handle TEXT NOT NULL UNIQUE,"
            " password_hash TEXT, totp_secret TEXT, totp_pending TEXT,"
            " totp_last_step INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,"
            " locked_until REAL NOT NULL DEFAULT 0, created REAL NOT NULL)"
        )
        db.execute(
            "INSERT INTO users (kind, username, member_handle, created)"
            " VALUES ('local', 'alice', 'alice', 0)"
        )
    store = Store(path)
    try:
        alice = store.local_user("alice")
        assert alice is not None and alice.role == MEMBER and not alice.is_owner
        store.add_local_user("olivia", "x", "owner:olivia", OWNER)
        olivia = store.local_user("olivia")
        assert olivia is not None and olivia.is_owner
    finally:
        store.close()
    Store(path).close()  # opening again changes nothing


def test_audit_page_filters_and_pages(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.sqlite3")
    try:
        alice = store.add_local_user("alice", "x", "alice")
        for n in range(5):
            store.audit("login_ok", alice.id, "127.0.0.1", f"n{n}")
        store.audit("owner_freeze", None, "127.0.0.1", "bob")
        first = store.audit_page(event="login_ok", limit=3)
        assert [e.detail for e, _ in first] == ["n4", "n3", "n2"]
        assert {who for _, who in first} == {"alice"}
        rest = store.audit_page(event="login_ok", before_id=first[-1][0].id, limit=3)
        assert [e.detail for e, _ in rest] == ["n1", "n0"]
        assert [e.event for e, _ in store.audit_page(user_id=alice.id)] == ["login_ok"] * 5
        everything = store.audit_page()
        assert everything[0][0].event == "owner_freeze" and everything[0][1] is None
    finally:
        store.close()
