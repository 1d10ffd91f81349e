"""wallet_backup kind=lightning and wallet_restore against the Core Lightning stand-in.

A node with a channel to the hub is backed up live (hsm_secret, a consistent copy of its SQLite
database, emergency.recover; node id from getinfo in the manifest). Its files are then lost;
the restore refuses while lightningd runs, and once it is stopped puts the files back: the node
starts with the same node id and its channel to the hub.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyrage  # type: ignore[import-untyped]
import pytest

from simnet.pytest_lightning import LightningNodeHandle
from tests.integration.ops_backup.module_runner import run_module

pytestmark = pytest.mark.slow


def test_lightning_node_restored_with_its_id_and_channel(
    lightning_pair: tuple[LightningNodeHandle, LightningNodeHandle], tmp_path: Path
) -> None:
    node, hub = lightning_pair
    identity = pyrage.x25519.Identity.generate()
    key_file = tmp_path / "owner.agekey"
    key_file.write_text(str(identity) + "\n")
    node_id = node.node_id
    channels = node.rpc.listpeerchannels()["channels"]
    assert [c["peer_id"] for c in channels] == [hub.node_id]

    made = run_module(
        "wallet_backup",
        {
            "kind": "lightning",
            "lightning_dir": str(node.network_dir),
            "lightning_db": str(node.db_main),
            "lightning_rpc_file": str(node.rpc_path),
            "backup_dir": str(tmp_path / "backups"),
            "recipients": [str(identity.to_public())],
        },
    )
    assert made.get("changed") is True, made
    manifest = json.loads(Path(made["manifest_file"]).read_text())
    assert manifest["lightning"]["node_id"] == node_id
    assert manifest["lightning"]["files_missing"] == []
    assert [f["name"] for f in manifest["files"]] == [
        "hsm_secret",
        "lightningd.sqlite3",
        "emergency.recover",
    ]

    restore = {
        "manifest": made["manifest_file"],
        "identity_file": str(key_file),
        "lightning_dir": str(node.network_dir),
        "lightning_db": str(node.db_main),
    }
    running = run_module("wallet_restore", restore)
    assert running.get("failed") and "stop it before restoring" in running["msg"]

    node.stop()
    for lost in (
        node.network_dir / "hsm_secret",
        node.db_main,
        node.network_dir / "emergency.recover",
    ):
        lost.unlink()
    node.db_backup.unlink()
    restored = run_module("wallet_restore", restore, diff=True)
    assert restored["changed"] is True, restored
    assert restored["node_id"] == node_id
    assert (node.network_dir / "hsm_secret").stat().st_mode & 0o777 == 0o400
    node.start()
    assert node.node_id == node_id
    after = node.rpc.listpeerchannels()["channels"]
    assert [(c["peer_id"], c["state"]) for c in after] == [
        (c["peer_id"], c["state"]) for c in channels
    ]
