"""wallet_backup and wallet_restore against the simnet chain stand-in (the modules run in-process,
ending as Ansible ends them: JSON on stdout).

A funded wallet is backed up (encrypted to a key made here), the backup is restored on a second
node that joined the same simulated chain, and the restored wallet has the same balance, the same
addresses and labels. Around that: the manifest, the refusals (tampered file, existing wallet,
wrong identity), check mode, retention, and that no clear copy is left anywhere.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyrage  # type: ignore[import-untyped]
import pytest

from simnet.pytest_chain import ChainNode
from tests.integration.ops_backup.module_runner import run_module

pytestmark = pytest.mark.slow


def _keys(tmp_path: Path, name: str = "owner") -> tuple[str, Path]:
    identity = pyrage.x25519.Identity.generate()
    path = tmp_path / f"{name}.agekey"
    path.write_text(str(identity) + "\n")
    path.chmod(0o600)
    return str(identity.to_public()), path


def _rpc_args(node: ChainNode, wallet: str = "wallet") -> dict[str, Any]:
    return {
        "rpc_url": node.rpc_url,
        "rpc_user": node.user,
        "rpc_password": node.password,
        "wallet": wallet,
    }


def _funded_node(
    start_chain_node: Callable[..., ChainNode], chain: str = "bitcoin"
) -> tuple[ChainNode, list[str]]:
    node = start_chain_node(chain)
    node.rpc("createwallet", "wallet")
    mining = node.rpc("getnewaddress", "mining", wallet="wallet")
    node.mine(101, mining)
    alice = node.rpc("getnewaddress", "member:alice", wallet="wallet")
    node.pay(alice, 12_345_678)
    node.mine(1)
    return node, [mining, alice]


def _wait_height(node: ChainNode, height: int) -> None:
    deadline = time.monotonic() + 20
    while node.rpc("getblockcount") < height:
        assert time.monotonic() < deadline, "the second node did not sync"
        time.sleep(0.2)


def _backup(node: ChainNode, tmp_path: Path, recipient: str, **extra: Any) -> dict[str, Any]:
    args = {
        "kind": "chain",
        "chain": node.coin,
        "backup_dir": str(tmp_path / "backups"),
        "staging_dir": str(tmp_path / "staging"),
        "recipients": [recipient],
        **_rpc_args(node),
        **extra,
    }
    return run_module("wallet_backup", args)


@pytest.mark.parametrize("chain", ["bitcoin", "azcoin"])  # Bitcoin Core v30, AZCoin (v23)
def test_backup_restores_on_a_new_node_with_the_same_balance_and_addresses(
    start_chain_node: Callable[..., ChainNode], tmp_path: Path, chain: str
) -> None:
    node, addresses = _funded_node(start_chain_node, chain)
    recipient, identity = _keys(tmp_path)
    balance = node.rpc("getbalances", wallet="wallet")["mine"]
    height = node.rpc("getblockcount")

    result = _backup(node, tmp_path, recipient)
    assert result.get("changed") is True, result
    manifest = json.loads(Path(result["manifest_file"]).read_text())
    archive = Path(result["backup_file"])
    assert manifest["chain"] == {
        "chain": chain,
        "network": "regtest",
        "wallet": "wallet",
        "height": height,
        "best_block": node.rpc("getbestblockhash"),
    }
    assert manifest["file"] == archive.name and manifest["recipients"] == [recipient]
    assert archive.stat().st_mode & 0o777 == 0o600
    assert Path(result["manifest_file"]).stat().st_mode & 0o777 == 0o600
    assert "descriptors equal" in result["verification"]["scratch_restore"]
    # encrypted: the wallet's seed and labels are nowhere in the file; nothing clear is left
    raw = archive.read_bytes()
    assert raw.startswith(b"age-encryption.org/v1") and b"member:alice" not in raw
    assert list((tmp_path / "staging").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == sorted(
        [archive.name, Path(result["manifest_file"]).name]
    )
    assert node.rpc("listwallets") == ["wallet"]  # the scratch wallet is gone again

    # a new node on the same chain, the backup file copied to it
    fresh = start_chain_node(chain, addnode=f"127.0.0.1:{node.p2p_port}")
    _wait_height(fresh, height)
    restore = {
        "manifest": result["manifest_file"],
        "identity_file": str(identity),
        "staging_dir": str(tmp_path / "staging-new"),
        **_rpc_args(fresh),
    }
    planned = run_module("wallet_restore", restore, check=True, diff=True)
    assert planned["changed"] is True and planned["diff"]["before"]["exists"] is False
    assert fresh.rpc("listwallets") == []  # check mode touched nothing

    restored = run_module("wallet_restore", restore)
    assert restored["changed"] is True, restored
    assert restored["balances_sat"]["trusted"] == round(balance["trusted"] * 100_000_000)
    assert fresh.rpc("getbalances", wallet="wallet")["mine"] == balance
    for address in addresses:
        mine = fresh.rpc("getaddressinfo", address, wallet="wallet")
        assert mine["ismine"] is True
        assert mine["labels"] == node.rpc("getaddressinfo", address, wallet="wallet")["labels"]
    # the next address handed out is the one the old node would have given
    assert fresh.rpc("getnewaddress", wallet="wallet") == node.rpc("getnewaddress", wallet="wallet")
    assert list((tmp_path / "staging-new").iterdir()) == []

    again = run_module("wallet_restore", restore)
    assert again.get("failed") and "already exists" in again["msg"]


def test_a_tampered_backup_is_refused_before_anything_is_touched(
    start_chain_node: Callable[..., ChainNode], tmp_path: Path
) -> None:
    node, _ = _funded_node(start_chain_node)
    recipient, identity = _keys(tmp_path)
    result = _backup(node, tmp_path, recipient, verify="none")
    archive = Path(result["backup_file"])
    data = bytearray(archive.read_bytes())
    data[-1] ^= 1
    archive.write_bytes(bytes(data))
    node.rpc("unloadwallet", "wallet")
    refused = run_module(
        "wallet_restore",
        {
            "manifest": result["manifest_file"],
            "identity_file": str(identity),
            "staging_dir": str(tmp_path / "staging"),
            **_rpc_args(node, "other"),
        },
    )
    assert refused.get("failed") and "does not match its manifest" in refused["msg"]
    assert node.rpc("listwallets") == []


def test_another_identity_cannot_decrypt_and_leaves_no_wallet(
    start_chain_node: Callable[..., ChainNode], tmp_path: Path
) -> None:
    node, _ = _funded_node(start_chain_node)
    owner, _ = _keys(tmp_path, "owner")
    _, stranger = _keys(tmp_path, "stranger")
    result = _backup(node, tmp_path, owner)
    refused = run_module(
        "wallet_restore",
        {
            "manifest": result["manifest_file"],
            "identity_file": str(stranger),
            "staging_dir": str(tmp_path / "staging"),
            **_rpc_args(node, "copy"),
        },
    )
    assert refused.get("failed") and "decrypt" in refused["msg"]
    assert node.rpc("listwallets") == ["wallet"]
    assert list((tmp_path / "staging").iterdir()) == []


def test_force_moves_the_existing_wallet_aside(
    start_chain_node: Callable[..., ChainNode], tmp_path: Path
) -> None:
    node, addresses = _funded_node(start_chain_node)
    recipient, identity = _keys(tmp_path)
    result = _backup(node, tmp_path, recipient)
    args = {
        "manifest": result["manifest_file"],
        "identity_file": str(identity),
        "staging_dir": str(tmp_path / "staging"),
        "force": True,
        **_rpc_args(node),
    }
    refused = run_module("wallet_restore", {**args, "force": False})
    assert refused.get("failed") and "already exists" in refused["msg"]
    no_dir = run_module("wallet_restore", args)
    assert no_dir.get("failed") and "wallet_dir" in no_dir["msg"]

    wallets = node.netdir / "wallets"
    done = run_module("wallet_restore", {**args, "wallet_dir": str(wallets)})
    assert done["changed"] is True, done
    assert Path(done["replaced"]).parent == wallets
    assert Path(done["replaced"], "wallet.dat").exists()
    assert node.rpc("getaddressinfo", addresses[1], wallet="wallet")["ismine"] is True


def test_check_mode_writes_nothing_and_names_the_files(
    start_chain_node: Callable[..., ChainNode], tmp_path: Path
) -> None:
    node, _ = _funded_node(start_chain_node)
    recipient, _ = _keys(tmp_path)
    args = {
        "kind": "chain",
        "chain": "bitcoin",
        "backup_dir": str(tmp_path / "backups"),
        "staging_dir": str(tmp_path / "staging"),
        "recipients": [recipient],
        **_rpc_args(node),
    }
    planned = run_module("wallet_backup", args, check=True)
    assert planned["changed"] is True and planned["backup_file"].endswith(".tar.age")
    assert not (tmp_path / "backups").exists() and not (tmp_path / "staging").exists()
    missing = run_module("wallet_backup", {**args, "wallet": "nope"}, check=True)
    assert missing.get("failed") and "-18" in missing["msg"]


def test_retention_keeps_the_newest_per_day_and_week(
    start_chain_node: Callable[..., ChainNode], tmp_path: Path
) -> None:
    node, _ = _funded_node(start_chain_node)
    recipient, _ = _keys(tmp_path)
    first = _backup(node, tmp_path, recipient, verify="none")
    # pretend the first backup is 10 days old (another ISO week, beyond 1 daily)
    manifest_path = Path(first["manifest_file"])
    manifest = json.loads(manifest_path.read_text())
    manifest["created"] = "2020-01-01T03:00:00Z"
    manifest_path.write_text(json.dumps(manifest))
    second = _backup(node, tmp_path, recipient, verify="none", keep_daily=1, keep_weekly=1)
    assert sorted(second["removed"]) == sorted([first["backup_file"], first["manifest_file"]])
    assert Path(second["backup_file"]).exists() and not Path(first["backup_file"]).exists()
