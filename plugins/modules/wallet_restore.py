#!/usr/bin/python
# Copyright (c) 2026 Satoshiware SC Node developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: wallet_restore
short_description: Restore a chain wallet, Core Lightning or the exchange from a wallet_backup
version_added: 0.1.0
description:
  - Restores one backup made by M(satoshiware.scnode.wallet_backup), named by its manifest.
  - First, before anything is touched, the sha256 of the encrypted file must equal the
    manifest's. Then the module looks at what is there now and refuses to replace anything
    that differs from the backup unless O(force=true). Only then does it decrypt (age identity
    in O(identity_file)) into a private directory under O(staging_dir), check every file
    against the manifest, and restore.
  - A chain wallet is restored with C(restorewallet) (loaded on start-up from then on). With
    O(force=true) an existing wallet of that name is unloaded and its directory in
    O(wallet_dir) renamed to C(<name>.replaced-<stamp>), never deleted. A backup of another
    network than the node's (for example regtest into main) is refused unless O(force=true).
  - Core Lightning's files (C(hsm_secret) mode 0400, C(lightningd.sqlite3), C(emergency.recover))
    are written into O(lightning_dir) only while lightningd is stopped (nothing may answer on
    its RPC socket); stale C(-wal)/C(-shm)/C(-journal) files of a replaced database are removed.
  - The exchange database is restored into the SQLite file of O(database_url), or into
    PostgreSQL with C(pg_restore --clean --single-transaction) (refused while the database has
    tables, unless O(force=true)).
author:
  - Satoshiware SC Node developers (@satoshiware)
extends_documentation_fragment:
  - satoshiware.scnode.chain_rpc
options:
  manifest:
    description: The backup's manifest (C(….manifest.json)) on the managed node.
    type: path
    required: true
  backup_file:
    description: The encrypted archive; defaults to the file the manifest names, beside it.
    type: path
  identity_file:
    description: age identity file (C(AGE-SECRET-KEY-1…) lines) that decrypts the backup.
    type: path
    required: true
  encryption_engine:
    description: V(auto) uses C(pyrage) when it is importable, else the C(age) command.
    type: str
    choices: [auto, pyrage, cli]
    default: auto
  force:
    description:
      - Replace what exists and differs from the backup (a wallet of that name, another
        C(hsm_secret) or database, a non-empty exchange database), and accept a backup of
        another network.
    type: bool
    default: false
  staging_dir:
    description:
      - Directory for the clear files while the module runs (a private subdirectory, deleted
        before it returns). For chain wallets the daemon reads the file from there, so it must be
        a path the daemon may read, e.g. C(/var/lib/bitcoin/scnode-backup). Defaults to
        C(.staging) beside the manifest for the other kinds.
    type: path
  staging_owner:
    description: User owning the private staging subdirectory (the chain daemon's user).
    type: str
  wallet_dir:
    description:
      - The chain node's wallet directory (e.g. C(/var/lib/bitcoin/wallets)); needed only to
        move an existing wallet aside with O(force=true).
    type: path
  lightning_dir:
    description: Core Lightning's network directory (C(<lightning-dir>/<network>)).
    type: path
  lightning_db:
    description: Where the database goes; defaults to C(lightningd.sqlite3) in O(lightning_dir).
    type: path
  lightning_rpc_file:
    description:
      - lightningd's RPC socket, which must not answer (the daemon must be stopped).
      - Defaults to C(lightning-rpc) in O(lightning_dir).
    type: path
  database_url:
    description:
      - The exchange database to restore into (C(sqlite:////path) or C(postgresql://…)).
      - Never logged.
    type: str
  owner:
    description: Owner of the restored Lightning or SQLite files (the daemon's user).
    type: str
  group:
    description: Group of the restored Lightning or SQLite files.
    type: str
seealso:
  - module: satoshiware.scnode.wallet_backup
attributes:
  check_mode:
    support: full
    description: Verifies the manifest hash and the target, reports what would be restored.
  diff_mode:
    support: full
    description: Shows the wallet or files before and after (sha256 of files, never content).
  platform:
    support: full
    platforms: posix
    description: Runs on the node that holds the backup and the daemon.
  idempotent:
    support: partial
    description:
      - Files and SQLite databases equal to the backup are left alone (C(changed=false)); an
        existing wallet or a non-empty PostgreSQL database cannot be compared, so a second run
        fails unless O(force=true).
"""

EXAMPLES = r"""
- name: Restore the Bitcoin wallet on a new node
  satoshiware.scnode.wallet_restore:
    manifest: /var/backups/scnode/chain-bitcoin-wallet-20261126T030000Z.manifest.json
    identity_file: /root/scnode-backup.agekey
    wallet: wallet
    rpc_url: http://127.0.0.1:8332
    rpc_user: satoshi
    rpc_password: "{{ bitcoin_rpc_password }}"
    staging_dir: /var/lib/bitcoin/scnode-backup
    staging_owner: bitcoin

- name: Restore Core Lightning (stop lightningd first)
  satoshiware.scnode.wallet_restore:
    manifest: /var/backups/scnode/lightning-lightningd-20261126T030000Z.manifest.json
    identity_file: /root/scnode-backup.agekey
    lightning_dir: /var/lib/lightning/bitcoin
    owner: lightning
    group: lightning
"""

RETURN = r"""
kind:
  description: What the backup held (C(chain), C(lightning) or C(exchange)).
  returned: success
  type: str
  sample: chain
backup_created:
  description: When the backup was made (UTC).
  returned: success
  type: str
  sample: "2026-11-26T03:00:00Z"
wallet:
  description: Name of the restored chain wallet.
  returned: kind is chain
  type: str
  sample: wallet
balances_sat:
  description: Balances of the restored wallet in satoshis, read after the restore.
  returned: kind is chain and changed and not check mode
  type: dict
  sample: {trusted: 150000000, untrusted_pending: 0, immature: 0}
replaced:
  description: Where an existing wallet was moved with O(force=true).
  returned: when a wallet was moved aside
  type: str
  sample: /var/lib/bitcoin/wallets/wallet.replaced-20261126T031500Z
files:
  description: Files written (or that would be written), by destination path.
  returned: kind is lightning or exchange
  type: list
  elements: str
  sample: [/var/lib/lightning/bitcoin/hsm_secret]
manifest:
  description: The manifest the restore was checked against.
  returned: success
  type: dict
"""

import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import unquote  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.satoshiware.scnode.plugins.module_utils import (  # noqa: E402
    _backup as backup,
)
from ansible_collections.satoshiware.scnode.plugins.module_utils._chain_rpc import (  # noqa: E402
    CHAIN_RPC_MUTUALLY_EXCLUSIVE,
    CHAIN_RPC_REQUIRED_TOGETHER,
    ChainRpcClient,
    ChainRpcError,
    amount_to_sats,
    chain_rpc_argument_spec,
    client_from_module_params,
)

LIGHTNING_MODES = {"hsm_secret": 0o400, "lightningd.sqlite3": 0o600, "emergency.recover": 0o600}


def argument_spec() -> dict[str, Any]:
    spec = chain_rpc_argument_spec()
    spec.update(
        manifest={"type": "path", "required": True},
        backup_file={"type": "path"},
        identity_file={"type": "path", "required": True, "no_log": False},
        encryption_engine={"type": "str", "choices": list(backup.ENGINES), "default": "auto"},
        force={"type": "bool", "default": False},
        staging_dir={"type": "path"},
        staging_owner={"type": "str"},
        wallet_dir={"type": "path"},
        lightning_dir={"type": "path"},
        lightning_db={"type": "path"},
        lightning_rpc_file={"type": "path"},
        database_url={"type": "str", "no_log": True},
        owner={"type": "str"},
        group={"type": "str"},
    )
    return spec


class Restore:
    """One restore: the manifest is verified in the constructor, before anything else."""

    def __init__(self, params: dict[str, Any], check_mode: bool) -> None:
        self.params = params
        self.check_mode = check_mode
        self.manifest, self.archive = backup.verify_backup(
            params["manifest"], params["backup_file"]
        )
        self.kind = self.manifest["kind"]
        self.result: dict[str, Any] = {
            "changed": False,
            "kind": self.kind,
            "backup_created": self.manifest["created"],
            "manifest": self.manifest,
        }

    # --- the clear files ---------------------------------------------------------------------

    def decrypt(self, work: str) -> dict[str, str]:
        engine = backup.age_engine(self.params["encryption_engine"])
        clear = Path(work) / "archive.tar"
        backup.decrypt_file(self.archive, str(clear), self.params["identity_file"], engine)
        files_dir = Path(work) / "files"
        files_dir.mkdir(mode=0o700)
        extracted = backup.extract_archive(str(clear), str(files_dir), self.manifest["files"])
        clear.unlink()
        return extracted

    def with_clear_files(self, staging: str, owner: str | None) -> dict[str, str]:
        backup.private_dir(staging, owner)
        self.work = tempfile.mkdtemp(prefix="restore-", dir=staging)
        backup.private_dir(self.work, owner)
        files = self.decrypt(self.work)
        if owner:
            for path in [str(Path(p).parent) for p in files.values()] + list(files.values()):
                shutil.chown(path, owner)
        return files

    def run(self) -> dict[str, Any]:
        self.work = ""
        try:
            getattr(self, "restore_" + self.kind)()
        finally:
            if self.work:
                shutil.rmtree(self.work, ignore_errors=True)
        return self.result

    # --- chain -------------------------------------------------------------------------------

    def restore_chain(self) -> None:
        section = self.manifest["chain"]
        params = dict(self.params)
        params["wallet"] = params["wallet"] or section["wallet"]
        name = params["wallet"]
        client: ChainRpcClient = client_from_module_params(params)
        network = client.call("getblockchaininfo")["chain"]
        if network != section["network"] and not params["force"]:
            raise backup.BackupError(
                "the backup is of a %s wallet and this node runs %s: refusing (force=true"
                " overrides)" % (section["network"], network)
            )
        loaded = name in client.call("listwallets")
        on_disk = name in [w["name"] for w in client.call("listwalletdir")["wallets"]]
        exists = loaded or on_disk
        if exists and not params["force"]:
            raise backup.BackupError(
                "a wallet named %r already exists on the node: refusing to overwrite it"
                " (force=true moves it aside first)" % name
            )
        if exists and not params["wallet_dir"]:
            raise backup.BackupError("force=true over an existing wallet needs wallet_dir")
        if not params["staging_dir"]:
            raise backup.BackupError("staging_dir is required to restore a chain wallet")
        self.result.update(
            changed=True,
            wallet=name,
            diff={
                "before": {"wallet": name, "exists": exists, "loaded": loaded},
                "after": {
                    "wallet": name,
                    "exists": True,
                    "loaded": True,
                    "restored_from": self.manifest["file"],
                    "backup_height": section.get("height"),
                },
            },
        )
        if self.check_mode:
            return
        files = self.with_clear_files(params["staging_dir"], params["staging_owner"])
        if exists:
            if loaded:
                client.call("unloadwallet", [name, False])
            aside = Path(params["wallet_dir"]) / (
                "%s.replaced-%s" % (name, backup.utc_now().strftime(backup.STAMP_FORMAT))
            )
            (Path(params["wallet_dir"]) / name).rename(aside)
            self.result["replaced"] = str(aside)
        client.call("restorewallet", [name, files["wallet.dat"], True])
        mine = client.wallet_call("getbalances", wallet=name)["mine"]
        self.result["balances_sat"] = {
            key: amount_to_sats(mine.get(key, 0))
            for key in ("trusted", "untrusted_pending", "immature")
        }

    # --- files (Lightning, SQLite exchange) --------------------------------------------------

    def _plan_files(self, targets: dict[str, str]) -> list[tuple[str, str]]:
        """(archive name, destination) of each file that differs; refuses without force."""
        entries = {entry["name"]: entry for entry in self.manifest["files"]}
        todo, before, after = [], {}, {}
        for name, destination in sorted(targets.items()):
            expected = entries[name]["sha256"]
            current = backup.sha256_file(destination) if Path(destination).is_file() else None
            before[destination] = "sha256:%s" % current if current else "(absent)"
            after[destination] = "sha256:%s" % expected
            if current == expected:
                continue
            if current is not None and not self.params["force"]:
                raise backup.BackupError(
                    "%s exists and differs from the backup: refusing to replace it"
                    " (force=true replaces it)" % destination
                )
            todo.append((name, destination))
        self.result["files"] = [destination for _name, destination in todo]
        self.result["diff"] = {"before": before, "after": after}
        self.result["changed"] = bool(todo)
        return todo

    def _install(self, todo: list[tuple[str, str]], modes: dict[str, int], staging: str) -> None:
        if not todo or self.check_mode:
            return
        files = self.with_clear_files(staging, None)
        for name, destination in todo:
            Path(destination).parent.mkdir(parents=True, exist_ok=True)
            if name.endswith(".sqlite3"):
                for suffix in ("-wal", "-shm", "-journal"):
                    Path(destination + suffix).unlink(missing_ok=True)
            backup.install_file(
                files[name],
                destination,
                modes.get(name, 0o600),
                self.params["owner"],
                self.params["group"],
            )

    def _default_staging(self) -> str:
        return self.params["staging_dir"] or str(
            Path(self.params["manifest"]).absolute().parent / ".staging"
        )

    def restore_lightning(self) -> None:
        directory = self.params["lightning_dir"]
        if not directory:
            raise backup.BackupError("lightning_dir is required to restore a Lightning backup")
        rpc_file = self.params["lightning_rpc_file"] or str(Path(directory) / "lightning-rpc")
        if backup.lightning_running(rpc_file):
            raise backup.BackupError(
                "lightningd answers on %s: stop it before restoring its files" % rpc_file
            )
        targets = {}
        for entry in self.manifest["files"]:
            if entry["name"] == "lightningd.sqlite3" and self.params["lightning_db"]:
                targets[entry["name"]] = self.params["lightning_db"]
            elif entry["name"] in LIGHTNING_MODES:
                targets[entry["name"]] = str(Path(directory) / entry["name"])
        todo = self._plan_files(targets)
        self.result["node_id"] = self.manifest["lightning"].get("node_id")
        self._install(todo, LIGHTNING_MODES, self._default_staging())

    def restore_exchange(self) -> None:
        url = self.params["database_url"]
        if not url:
            raise backup.BackupError("database_url is required to restore the exchange database")
        engine = backup.database_kind(url)
        if engine != self.manifest["exchange"]["database"]:
            raise backup.BackupError(
                "the backup holds a %s database, database_url names %s"
                % (self.manifest["exchange"]["database"], engine)
            )
        if engine == "sqlite":
            path = unquote(backup.sqlite_path(url))
            todo = self._plan_files({"exchange.sqlite3": path})
            self._install(todo, {"exchange.sqlite3": 0o640}, self._default_staging())
            return
        tables = backup.pg_table_count(url)
        if tables and not self.params["force"]:
            raise backup.BackupError(
                "the exchange database already has %d tables: refusing to replace it"
                " (force=true replaces it)" % tables
            )
        self.result.update(
            changed=True,
            files=[],
            diff={
                "before": {"database": "postgresql", "tables": tables},
                "after": {"database": "postgresql", "restored_from": self.manifest["file"]},
            },
        )
        if self.check_mode:
            return
        files = self.with_clear_files(self._default_staging(), None)
        backup.pg_restore(url, files["exchange.pgdump"])


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=CHAIN_RPC_MUTUALLY_EXCLUSIVE,
        required_together=CHAIN_RPC_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    try:
        result = Restore(module.params, module.check_mode).run()
    except ChainRpcError as exc:
        module.fail_json(msg=str(exc), rpc_code=exc.code)
    except (backup.BackupError, OSError) as exc:
        module.fail_json(msg=str(exc))
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
