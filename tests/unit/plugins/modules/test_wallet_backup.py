"""The wallet_backup and wallet_restore modules with the chain RPC stubbed at
``ChainRpcClient._call``: what is written, what is refused, what is left behind."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import tarfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn
from unittest import mock

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.satoshiware.scnode.plugins.module_utils import (  # type: ignore[import-untyped]
    _backup as backup,
)
from ansible_collections.satoshiware.scnode.plugins.module_utils._chain_rpc import (  # type: ignore[import-untyped]
    ChainRpcClient,
)
from ansible_collections.satoshiware.scnode.plugins.modules import (  # type: ignore[import-untyped]
    wallet_backup,
    wallet_restore,
)

PASSWORD = "s3cret-Pa55word"
BEST = "0f" * 32
DESCRIPTORS = [{"desc": "wpkh([d34db33f/84h/1h/0h]tpubD6NzVbkrYhZ4X/0/*)#abcdefgh"}]
ENGINES = [
    pytest.param(
        "pyrage",
        marks=pytest.mark.skipif(
            backup._pyrage() is None, reason="the Python library pyrage is not installed here"
        ),
    ),
    pytest.param(
        "cli",
        marks=pytest.mark.skipif(
            shutil.which("age") is None, reason="the age command (Debian package age) is missing"
        ),
    ),
]


class AnsibleExitJson(Exception):  # noqa: N818 - the name every collection's tests use
    """exit_json was called; the result is in args[0]."""


class AnsibleFailJson(Exception):  # noqa: N818
    """fail_json was called; the result is in args[0]."""


def _exit_json(self: Any, **result: Any) -> NoReturn:
    result.setdefault("changed", False)
    raise AnsibleExitJson(result)


def _fail_json(self: Any, msg: str, **result: Any) -> NoReturn:
    raise AnsibleFailJson({"msg": msg, "failed": True, **result})


@pytest.fixture(autouse=True)
def _module_exits() -> Iterator[None]:
    with (
        mock.patch.object(wallet_backup.AnsibleModule, "exit_json", _exit_json),
        mock.patch.object(wallet_backup.AnsibleModule, "fail_json", _fail_json),
    ):
        yield


def run(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    with patch_module_args(args), pytest.raises((AnsibleExitJson, AnsibleFailJson)) as done:
        module.main()
    result: dict[str, Any] = done.value.args[0]
    json.dumps(result)
    return result


@pytest.fixture
def keys(tmp_path: Path) -> tuple[str, str]:
    """(recipient, identity file) of an age key made for this test (the age command's format)."""
    if backup._pyrage() is not None:
        identity = backup._pyrage().x25519.Identity.generate()
        secret, public = str(identity), str(identity.to_public())
    else:
        if shutil.which("age-keygen") is None:
            pytest.skip("neither pyrage nor age-keygen is available to make a test key")
        import subprocess

        out = subprocess.run(["age-keygen"], capture_output=True, text=True, check=True).stdout
        secret = next(line for line in out.splitlines() if line.startswith("AGE-SECRET-KEY-"))
        public = next(line for line in out.splitlines() if "public key:" in line).split(": ")[1]
    path = tmp_path / "owner.agekey"
    path.write_text(secret + "\n")
    return public, str(path)


def _sqlite_file(path: str, rows: int = 3) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE main (key BLOB, value BLOB)")
    db.executemany(
        "INSERT INTO main VALUES (?, ?)", [(b"k%d" % i, b"v%d" % i) for i in range(rows)]
    )
    db.commit()
    db.close()


class FakeNode:
    """Answers of a Bitcoin Core node with one wallet, and the calls it received."""

    def __init__(self, scratch_descriptors: list[dict[str, str]] | None = None) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.wallets = ["wallet"]
        self.scratch_descriptors = scratch_descriptors or DESCRIPTORS
        self.backup_body: bytes | None = None

    def __call__(self, client: ChainRpcClient, path: str, method: str, params: Any) -> Any:
        self.calls.append((path, method, params))
        if method == "getblockchaininfo":
            return {"chain": "main", "blocks": 870000, "bestblockhash": BEST}
        if method == "getwalletinfo":
            return {"walletname": "wallet"}
        if method == "backupwallet":
            if self.backup_body is None:
                _sqlite_file(params[0])
            else:
                Path(params[0]).write_bytes(self.backup_body)
            return None
        if method == "restorewallet":
            assert Path(params[1]).is_file()
            self.wallets.append(params[0])
            return {"name": params[0]}
        if method == "listdescriptors":
            scratch = path != "/wallet/wallet"
            return {"descriptors": self.scratch_descriptors if scratch else DESCRIPTORS}
        if method == "unloadwallet":
            self.wallets.remove(params[0])
            return {}
        if method == "listwallets":
            return list(self.wallets)
        if method == "listwalletdir":
            return {"wallets": [{"name": name} for name in self.wallets]}
        if method == "getbalances":
            return {"mine": {"trusted": Decimal("1.5"), "untrusted_pending": Decimal(0)}}
        raise AssertionError("unexpected call " + method)


def stub(node: FakeNode) -> Any:
    return mock.patch.object(ChainRpcClient, "_call", autospec=True, side_effect=node)


def chain_args(tmp_path: Path, recipient: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "chain",
        "chain": "bitcoin",
        "wallet": "wallet",
        "rpc_user": "backup",
        "rpc_password": PASSWORD,
        "backup_dir": str(tmp_path / "backups"),
        "staging_dir": str(tmp_path / "staging"),
        "recipients": [recipient],
        **extra,
    }


def _decrypt_members(result: dict[str, Any], identity: str, tmp_path: Path) -> dict[str, bytes]:
    clear = tmp_path / "clear.tar"
    backup.decrypt_file(result["backup_file"], str(clear), identity, backup.age_engine())
    with tarfile.open(clear) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers()}  # type: ignore[union-attr]


@pytest.mark.parametrize("engine", ENGINES)
def test_chain_backup_is_verified_encrypted_and_described(
    tmp_path: Path, keys: tuple[str, str], engine: str
) -> None:
    node = FakeNode()
    with stub(node):
        result = run(wallet_backup, chain_args(tmp_path, keys[0], encryption_engine=engine))
    assert result["changed"] is True and result["engine"] == engine
    manifest = json.loads(Path(result["manifest_file"]).read_text())
    assert manifest == result["manifest"]
    assert manifest["chain"] == {
        "chain": "bitcoin",
        "network": "main",
        "wallet": "wallet",
        "height": 870000,
        "best_block": BEST,
    }
    assert manifest["sha256"] == backup.sha256_file(result["backup_file"])
    assert result["verification"]["sqlite_integrity"] == "ok"
    assert result["verification"]["scratch_restore"] == "1 descriptors equal the live wallet's"
    methods = [call[1] for call in node.calls]
    assert methods == [
        "getblockchaininfo",
        "getwalletinfo",
        "backupwallet",
        "restorewallet",
        "listdescriptors",
        "unloadwallet",
        "listdescriptors",
    ]
    assert node.wallets == ["wallet"]
    members = _decrypt_members(result, keys[1], tmp_path)
    assert list(members) == ["wallet.dat"]
    assert members["wallet.dat"].startswith(backup.SQLITE_HEADER)
    assert (
        manifest["files"][0]["sha256"] == backup.hashlib.sha256(members["wallet.dat"]).hexdigest()
    )
    assert list((tmp_path / "staging").iterdir()) == []
    assert PASSWORD not in json.dumps(result)


def test_a_copy_with_other_descriptors_is_refused_and_nothing_is_kept(
    tmp_path: Path, keys: tuple[str, str]
) -> None:
    node = FakeNode(scratch_descriptors=[{"desc": "wpkh(other)#zzzzzzzz"}])
    with stub(node):
        result = run(wallet_backup, chain_args(tmp_path, keys[0]))
    assert result["failed"] and "other descriptors" in result["msg"]
    assert [p.name for p in (tmp_path / "backups").iterdir()] == []
    assert list((tmp_path / "staging").iterdir()) == []
    assert node.wallets == ["wallet"]  # the scratch wallet was unloaded all the same


def test_a_damaged_sqlite_copy_is_refused(tmp_path: Path, keys: tuple[str, str]) -> None:
    node = FakeNode()
    node.backup_body = backup.SQLITE_HEADER + b"\x00" * 200
    with stub(node):
        result = run(wallet_backup, chain_args(tmp_path, keys[0]))
    assert result["failed"] and "integrity" in result["msg"]
    assert "restorewallet" not in [call[1] for call in node.calls]


def test_integrity_only_needs_a_sqlite_copy(tmp_path: Path, keys: tuple[str, str]) -> None:
    node = FakeNode()
    node.backup_body = b'{"format": "not sqlite"}'
    with stub(node):
        result = run(wallet_backup, chain_args(tmp_path, keys[0], verify="integrity"))
    assert result["failed"] and "not a SQLite database" in result["msg"]


def test_check_mode_reads_but_writes_nothing(tmp_path: Path, keys: tuple[str, str]) -> None:
    node = FakeNode()
    with stub(node):
        result = run(wallet_backup, {**chain_args(tmp_path, keys[0]), "_ansible_check_mode": True})
    assert result["changed"] is True and result["removed"] == []
    assert result["backup_file"].startswith(str(tmp_path / "backups" / "chain-bitcoin-wallet-"))
    assert [call[1] for call in node.calls] == ["getblockchaininfo", "getwalletinfo"]
    assert not (tmp_path / "backups").exists() and not (tmp_path / "staging").exists()


@pytest.mark.parametrize(
    ("recipients", "message"),
    [([], "at least one age recipient"), (["hunter2"], "not an age recipient")],
)
def test_recipients_are_required_and_checked(
    tmp_path: Path, recipients: list[str], message: str
) -> None:
    with stub(FakeNode()):
        result = run(wallet_backup, {**chain_args(tmp_path, "x"), "recipients": recipients})
    assert result["failed"] and message in result["msg"]


def test_chain_kind_needs_its_options(tmp_path: Path) -> None:
    args = chain_args(tmp_path, "age1x")
    del args["staging_dir"]
    result = run(wallet_backup, args)
    assert result["failed"] and "staging_dir" in result["msg"]


# --- restore of a chain wallet -----------------------------------------------------------------


def _chain_backup(tmp_path: Path, recipient: str) -> dict[str, Any]:
    with stub(FakeNode()):
        return run(wallet_backup, chain_args(tmp_path, recipient, verify="integrity"))


def restore_args(
    made: dict[str, Any], identity: str, tmp_path: Path, **extra: Any
) -> dict[str, Any]:
    return {
        "manifest": made["manifest_file"],
        "identity_file": identity,
        "rpc_user": "backup",
        "rpc_password": PASSWORD,
        "staging_dir": str(tmp_path / "restore-staging"),
        **extra,
    }


def test_restore_checks_the_hash_before_any_rpc(tmp_path: Path, keys: tuple[str, str]) -> None:
    made = _chain_backup(tmp_path, keys[0])
    with Path(made["backup_file"]).open("ab") as handle:
        handle.write(b"\x00")
    node = FakeNode()
    with stub(node):
        result = run(wallet_restore, restore_args(made, keys[1], tmp_path))
    assert result["failed"] and "does not match its manifest" in result["msg"]
    assert node.calls == []


def test_restore_refuses_an_existing_wallet_and_another_network(
    tmp_path: Path, keys: tuple[str, str]
) -> None:
    made = _chain_backup(tmp_path, keys[0])
    with stub(FakeNode()) as calls:
        result = run(wallet_restore, restore_args(made, keys[1], tmp_path))
    assert result["failed"] and "already exists" in result["msg"]
    assert "restorewallet" not in [c.args[2] for c in calls.call_args_list]

    manifest = json.loads(Path(made["manifest_file"]).read_text())
    manifest["chain"]["network"] = "regtest"
    Path(made["manifest_file"]).write_text(json.dumps(manifest))
    node = FakeNode()
    node.wallets = []
    with stub(node):
        result = run(wallet_restore, restore_args(made, keys[1], tmp_path))
    assert result["failed"] and "regtest wallet and this node runs main" in result["msg"]


def test_restore_into_a_new_node(tmp_path: Path, keys: tuple[str, str]) -> None:
    made = _chain_backup(tmp_path, keys[0])
    node = FakeNode()
    node.wallets = []
    args = restore_args(made, keys[1], tmp_path, _ansible_diff=True)
    with stub(node):
        planned = run(wallet_restore, {**args, "_ansible_check_mode": True})
    assert planned["changed"] is True and node.wallets == []
    assert planned["diff"]["before"] == {"wallet": "wallet", "exists": False, "loaded": False}
    with stub(node):
        result = run(wallet_restore, args)
    assert result["changed"] is True and node.wallets == ["wallet"]
    assert result["balances_sat"] == {"trusted": 150_000_000, "untrusted_pending": 0, "immature": 0}
    restore_call = next(c for c in node.calls if c[1] == "restorewallet")
    assert restore_call[2][0] == "wallet" and restore_call[2][2] is True
    assert list((tmp_path / "restore-staging").iterdir()) == []


# --- Core Lightning and the exchange database --------------------------------------------------


@pytest.fixture
def lightning_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "lightning" / "bitcoin"
    directory.mkdir(parents=True)
    (directory / "hsm_secret").write_bytes(bytes(range(32)))
    (directory / "hsm_secret").chmod(0o400)
    _sqlite_file(str(directory / "lightningd.sqlite3"), rows=50)
    (directory / "emergency.recover").write_bytes(b"\x01scb")
    return directory


def test_lightning_backup_and_restore_on_a_new_node(
    tmp_path: Path, keys: tuple[str, str], lightning_dir: Path
) -> None:
    # a live connection holds the database open while the copy is made
    live = sqlite3.connect(lightning_dir / "lightningd.sqlite3")
    live.execute("INSERT INTO main VALUES (x'00', x'01')")
    live.commit()
    made = run(
        wallet_backup,
        {
            "kind": "lightning",
            "lightning_dir": str(lightning_dir),
            "backup_dir": str(tmp_path / "backups"),
            "recipients": [keys[0]],
        },
    )
    live.close()
    assert made["changed"] is True, made
    assert [f["name"] for f in made["manifest"]["files"]] == [
        "hsm_secret",
        "lightningd.sqlite3",
        "emergency.recover",
    ]
    assert made["manifest"]["lightning"] == {"files_missing": []}
    members = _decrypt_members(made, keys[1], tmp_path)
    assert members["hsm_secret"] == bytes(range(32))

    new_dir = tmp_path / "new" / "bitcoin"
    args = {
        "manifest": made["manifest_file"],
        "identity_file": keys[1],
        "lightning_dir": str(new_dir),
        "_ansible_diff": True,
    }
    result = run(wallet_restore, args)
    assert result["changed"] is True, result
    assert (new_dir / "hsm_secret").read_bytes() == bytes(range(32))
    assert (new_dir / "hsm_secret").stat().st_mode & 0o777 == 0o400
    restored = sqlite3.connect(new_dir / "lightningd.sqlite3")
    assert restored.execute("SELECT count(*) FROM main").fetchone()[0] == 51
    restored.close()
    assert result["diff"]["before"][str(new_dir / "hsm_secret")] == "(absent)"
    again = run(wallet_restore, args)
    assert again["changed"] is False and again["files"] == []


def test_lightning_restore_refuses_a_running_daemon_and_another_secret(
    tmp_path: Path, keys: tuple[str, str], lightning_dir: Path
) -> None:
    made = run(
        wallet_backup,
        {
            "kind": "lightning",
            "lightning_dir": str(lightning_dir),
            "backup_dir": str(tmp_path / "backups"),
            "recipients": [keys[0]],
        },
    )
    target = tmp_path / "t"
    target.mkdir()
    args = {
        "manifest": made["manifest_file"],
        "identity_file": keys[1],
        "lightning_dir": str(target),
    }
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(target / "lightning-rpc"))
        listener.listen(1)
        result = run(wallet_restore, args)
    assert result["failed"] and "stop it before restoring" in result["msg"]
    (target / "lightning-rpc").unlink()

    (target / "hsm_secret").write_bytes(b"\xff" * 32)
    result = run(wallet_restore, args)
    assert result["failed"] and "differs from the backup" in result["msg"]
    assert (target / "hsm_secret").read_bytes() == b"\xff" * 32
    (target / "lightningd.sqlite3-wal").write_bytes(b"stale")
    result = run(wallet_restore, {**args, "force": True})
    assert result["changed"] is True
    assert (target / "hsm_secret").read_bytes() == bytes(range(32))
    assert not (target / "lightningd.sqlite3-wal").exists()


def test_exchange_sqlite_backup_and_restore(tmp_path: Path, keys: tuple[str, str]) -> None:
    database = tmp_path / "exchange.sqlite3"
    _sqlite_file(str(database), rows=10)
    made = run(
        wallet_backup,
        {
            "kind": "exchange",
            "database_url": f"sqlite:///{database}",
            "backup_dir": str(tmp_path / "backups"),
            "recipients": [keys[0]],
        },
    )
    assert made["changed"] is True and made["manifest"]["exchange"]["database"] == "sqlite"
    target = tmp_path / "restored" / "exchange.sqlite3"
    args = {
        "manifest": made["manifest_file"],
        "identity_file": keys[1],
        "database_url": f"sqlite:///{target}",
    }
    assert run(wallet_restore, args)["changed"] is True
    db = sqlite3.connect(target)
    assert db.execute("SELECT count(*) FROM main").fetchone()[0] == 10
    db.close()
    assert run(wallet_restore, args)["changed"] is False
    _sqlite_file(str(tmp_path / "other.sqlite3"), rows=1)
    shutil.copyfile(tmp_path / "other.sqlite3", target)
    refused = run(wallet_restore, args)
    assert refused["failed"] and "differs from the backup" in refused["msg"]


# --- the shared helpers ------------------------------------------------------------------------


def _at(text: str) -> Any:
    return backup.parse_created(text)


def test_retention_keeps_newest_per_day_and_per_week() -> None:
    backups = [
        (_at("2026-11-26T03:00:00Z"), "thu"),
        (_at("2026-11-25T03:00:00Z"), "wed"),
        (_at("2026-11-25T01:00:00Z"), "wed-early"),
        (_at("2026-11-24T03:00:00Z"), "tue"),
        (_at("2026-11-18T03:00:00Z"), "last-week"),
        (_at("2026-11-11T03:00:00Z"), "two-weeks-ago"),
        (_at("2026-11-10T03:00:00Z"), "two-weeks-ago-tue"),
    ]
    assert sorted(backup.expired(backups, keep_daily=2, keep_weekly=3)) == sorted(
        ["wed-early", "tue", "two-weeks-ago-tue"]
    )
    assert backup.expired(backups, keep_daily=0, keep_weekly=0) == [
        path for _created, path in backups[1:]
    ]


def test_archive_entries_must_match_the_manifest(tmp_path: Path) -> None:
    source = tmp_path / "x"
    source.write_bytes(b"data")
    files = backup.make_archive([("x", str(source))], str(tmp_path / "a.tar"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(backup.BackupError, match="does not match"):
        backup.extract_archive(str(tmp_path / "a.tar"), str(out), [{**files[0], "sha256": "00"}])
    with tarfile.open(tmp_path / "evil.tar", "w") as archive:
        archive.add(source, arcname="../x")
    with pytest.raises(backup.BackupError, match="unexpected entry"):
        backup.extract_archive(str(tmp_path / "evil.tar"), str(out), files)


def test_postgres_password_goes_to_the_environment() -> None:
    target, env = backup.postgres_target("postgresql+psycopg://ex:p%40ss@db.local:5433/exchange")
    assert target == "postgresql://ex@db.local:5433/exchange"
    assert env["PGPASSWORD"] == "p@ss"
