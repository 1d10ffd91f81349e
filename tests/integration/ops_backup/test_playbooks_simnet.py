"""playbooks/backup.yml and playbooks/restore.yml on this machine (local connection) against two
simnet chain nodes on one simulated chain, with a SQLite exchange database beside them.

backup.yml backs up the wallet and the database and fetches them to a "controller" directory;
restore.yml restores both on the second node from there: same balance, same addresses, same
database rows; restore.yml --check before it verifies the backups and changes nothing. (The
refusals — existing wallet, tampered file, wrong identity — are the module tests'.)
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyrage  # type: ignore[import-untyped]
import pytest

from simnet.pytest_chain import ChainNode

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def _playbook(
    name: str, inventory: Path, extra: dict[str, Any], *options: str
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["PATH"] = f"{BIN}:{env['PATH']}"
    return subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            f"playbooks/{name}",
            "-i",
            str(inventory),
            "--skip-tags",
            "packages",
            "-e",
            json.dumps(extra),
            *options,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _chain_entry(node: ChainNode, data_dir: Path) -> dict[str, str]:
    data_dir.mkdir(exist_ok=True)
    return {
        "chain": "bitcoin",
        "rpc_url": node.rpc_url,
        "cookie_file": str(node.netdir / ".cookie"),
        "wallet": "wallet",
        "data_dir": str(data_dir),
        "user": "root",
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="the playbooks run as root (become), like on a node")
def test_backup_yml_then_restore_yml_on_another_node(
    start_chain_node: Callable[..., ChainNode], tmp_path: Path
) -> None:
    old = start_chain_node()
    old.rpc("createwallet", "wallet")
    old.mine(101, old.rpc("getnewaddress", wallet="wallet"))
    alice = old.rpc("getnewaddress", "member:alice", wallet="wallet")
    old.pay(alice, 50_000_000)
    old.mine(1)
    exchange = tmp_path / "exchange.sqlite3"
    db = sqlite3.connect(exchange)
    db.execute("CREATE TABLE postings (id INTEGER PRIMARY KEY, sats INTEGER)")
    db.executemany("INSERT INTO postings (sats) VALUES (?)", [(n,) for n in range(100)])
    db.commit()
    db.close()

    identity = pyrage.x25519.Identity.generate()
    key_file = tmp_path / "owner.agekey"
    key_file.write_text(str(identity) + "\n")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    scnode:\n      hosts:\n        node.test:\n"
        f"          ansible_connection: local\n"
        f"          ansible_python_interpreter: {sys.executable}\n"
    )
    fetched = tmp_path / "controller"
    backup = _playbook(
        "backup.yml",
        inventory,
        {
            "ansible_become": False,
            "backup_timer_recipients": [str(identity.to_public())],
            "backup_timer_dir": str(tmp_path / "backups"),
            "backup_timer_chains": [_chain_entry(old, tmp_path / "old-data")],
            "backup_timer_lightning_dir": str(tmp_path / "no-lightning"),
            "backup_timer_exchange_database_url": f"sqlite:///{exchange}",
            "backup_fetch_dir": str(fetched),
        },
    )
    assert backup.returncode == 0, backup.stdout[-4000:]
    names = sorted(p.name for p in (fetched / "node.test").iterdir())
    assert [n.split("-2")[0] for n in names] == [
        "chain-bitcoin-wallet",
        "chain-bitcoin-wallet",
        "exchange-exchange",
        "exchange-exchange",
    ]

    new = start_chain_node(addnode=f"127.0.0.1:{old.p2p_port}")
    deadline = time.monotonic() + 20
    while new.rpc("getblockcount") < old.rpc("getblockcount"):
        assert time.monotonic() < deadline, "the new node did not sync"
        time.sleep(0.2)
    restored_db = tmp_path / "new" / "exchange.sqlite3"
    restore_vars = {
        "ansible_become": False,
        "backup_fetch_dir": str(fetched),
        "restore_identity_file": str(key_file),
        "restore_node_dir": str(tmp_path / "restore"),
        "restore_chains": {"bitcoin": _chain_entry(new, tmp_path / "new-data")},
        "restore_exchange_database_url": f"sqlite:///{restored_db}",
        "restore_exchange_service": "",
        "restore_exchange_owner": "root",
    }
    checked = _playbook("restore.yml", inventory, restore_vars, "--check")
    assert checked.returncode == 0, checked.stdout[-4000:]
    assert new.rpc("listwallets") == [] and not restored_db.exists()
    restore = _playbook("restore.yml", inventory, restore_vars)
    assert restore.returncode == 0, restore.stdout[-4000:]
    assert new.rpc("getbalances", wallet="wallet") == old.rpc("getbalances", wallet="wallet")
    info = new.rpc("getaddressinfo", alice, wallet="wallet")
    assert info["ismine"] is True and info["labels"] == ["member:alice"]
    db = sqlite3.connect(restored_db)
    assert db.execute("SELECT count(*), sum(sats) FROM postings").fetchone() == (100, 4950)
    db.close()
    assert not Path("/root/.scnode-restore.agekey").exists()
