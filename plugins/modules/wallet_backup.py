#!/usr/bin/python
# Copyright (c) 2026 Satoshiware SC Node developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: wallet_backup
short_description: Encrypted, verified backups of a chain wallet, Core Lightning or the exchange
version_added: 0.1.0
description:
  - Makes one backup of one thing on the node and keeps it in O(backup_dir) as an age-encrypted
    tar archive (C(<kind>-<name>-<UTC stamp>.tar.age)) with a manifest beside it
    (C(….manifest.json)) that records what it holds and the sha256 of the encrypted file.
  - O(kind=chain) backs up a Bitcoin Core or AZCoin wallet with C(backupwallet) into
    O(staging_dir), checks the copy (SQLite C(PRAGMA integrity_check) when the file is SQLite, and
    with O(verify=full) loads it into a scratch wallet with C(restorewallet) and compares its
    descriptors with the live wallet's, then unloads and deletes the scratch wallet), and records
    the chain, network, wallet, block height and best block hash.
  - O(kind=lightning) backs up Core Lightning's C(hsm_secret), a consistent copy of the live
    C(lightningd.sqlite3) made with SQLite's online backup API (copying the file of a running
    node is unsafe), and C(emergency.recover) when it exists. With O(lightning_rpc_file) the
    node id and block height (C(getinfo)) go into the manifest, so a restore can be checked.
  - O(kind=exchange) backs up the exchange database named by O(database_url) — SQLite with the
    online backup API, PostgreSQL with C(pg_dump --format=custom) (checked with
    C(pg_restore --list)).
  - The clear copy exists only in a private directory under O(staging_dir) while the module
    runs, and is deleted before the module returns, also on failure.
  - Then retention removes older backups of the same kind and name, keeping the newest backup
    of each of the last O(keep_daily) days and of each of the last O(keep_weekly) ISO weeks.
  - Encryption uses the Python library C(pyrage) when the managed node has it, else the C(age)
    command (Debian package C(age)). Both write the same age format.
author:
  - Satoshiware SC Node developers (@satoshiware)
extends_documentation_fragment:
  - satoshiware.scnode.chain_rpc
options:
  kind:
    description: What to back up.
    type: str
    choices: [chain, lightning, exchange]
    default: chain
  name:
    description:
      - Name of the backed-up thing in file names and for retention. Defaults to
        C(<chain>-<wallet>) for O(kind=chain), C(lightningd) and C(exchange) otherwise.
    type: str
  backup_dir:
    description: Directory of the encrypted backups and their manifests (created with mode 0700).
    type: path
    required: true
  recipients:
    description:
      - age recipients (C(age1…)) or SSH public keys (C(ssh-ed25519 …)) the backup is encrypted
        to. Any one of their identities decrypts it. At least one is required.
    type: list
    elements: str
    required: true
  encryption_engine:
    description:
      - V(auto) uses C(pyrage) when it is importable, else the C(age) command.
    type: str
    choices: [auto, pyrage, cli]
    default: auto
  keep_daily:
    description: Number of most recent days with a backup whose newest backup is kept.
    type: int
    default: 7
  keep_weekly:
    description: Number of most recent ISO weeks with a backup whose newest backup is kept.
    type: int
    default: 4
  staging_dir:
    description:
      - Directory the clear copy is made in, inside a private subdirectory deleted afterwards.
      - For O(kind=chain) the chain daemon writes the wallet copy there itself, so it must be
        a path the daemon may write (its data directory, under C(ProtectSystem=strict)), e.g.
        C(/var/lib/bitcoin/scnode-backup).
      - Defaults to C(<backup_dir>/.staging) for the other kinds.
    type: path
  staging_owner:
    description:
      - User that owns the private staging subdirectory (the chain daemon's user, e.g.
        C(bitcoin)), so the daemon can write the wallet copy into it.
    type: str
  chain:
    description:
      - Name of the chain the wallet belongs to (C(bitcoin), C(azcoin), a microcurrency);
        required for O(kind=chain).
    type: str
  verify:
    description:
      - How the chain wallet copy is checked before it is encrypted.
      - V(full) runs C(PRAGMA integrity_check) on SQLite copies and restores the copy into a
        scratch wallet whose descriptors must equal the live wallet's.
      - V(integrity) only checks the SQLite file (the copy must be SQLite).
      - V(none) trusts C(backupwallet).
    type: str
    choices: [full, integrity, none]
    default: full
  lightning_dir:
    description:
      - Core Lightning's network directory (C(<lightning-dir>/<network>)), which holds
        C(hsm_secret) and C(emergency.recover). Required for O(kind=lightning).
    type: path
  lightning_db:
    description: The live C(lightningd.sqlite3); defaults to the one in O(lightning_dir).
    type: path
  lightning_rpc_file:
    description:
      - lightningd's JSON-RPC socket; when set, C(getinfo) supplies the node id, network and
        block height recorded in the manifest.
    type: path
  database_url:
    description:
      - The exchange database, as the app's C(database_url) names it, C(sqlite:////absolute/path)
        or C(postgresql://user:password@host/db) (a C(+driver) suffix is ignored).
      - Required for O(kind=exchange). Never logged; the password is passed to C(pg_dump)
        in its environment, never on its command line.
    type: str
notes:
  - A backup is a new file each run, so the module always reports C(changed).
  - Fetch the backups to another place with M(ansible.builtin.fetch); they are encrypted, so
    they may leave the node (the identity to decrypt them must not be kept beside them).
seealso:
  - module: satoshiware.scnode.wallet_restore
attributes:
  check_mode:
    support: full
    description:
      - Checks that the thing exists and can be reached, and reports the file names it would
        write and the backups retention would remove, without writing or removing anything.
  diff_mode:
    support: none
    description: It only adds new files (and removes expired backups, listed in RV(removed)).
  platform:
    support: full
    platforms: posix
    description: Runs on the node that holds the data (the daemon writes the wallet copy locally).
  idempotent:
    support: none
    description: Every run makes a new backup.
"""

EXAMPLES = r"""
- name: Back up the Bitcoin wallet, encrypted to the owner's and the cluster's age keys
  satoshiware.scnode.wallet_backup:
    kind: chain
    chain: bitcoin
    wallet: wallet
    rpc_url: http://127.0.0.1:8332
    rpc_user: satoshi
    rpc_password: "{{ bitcoin_rpc_password }}"
    staging_dir: /var/lib/bitcoin/scnode-backup
    staging_owner: bitcoin
    backup_dir: /var/backups/scnode
    recipients:
      - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
    keep_daily: 7
    keep_weekly: 4
  register: bitcoin_backup

- name: Copy it to the controller
  ansible.builtin.fetch:
    src: "{{ item }}"
    dest: backups/
  loop:
    - "{{ bitcoin_backup.backup_file }}"
    - "{{ bitcoin_backup.manifest_file }}"

- name: Back up Core Lightning (hsm_secret, a consistent database copy, emergency.recover)
  satoshiware.scnode.wallet_backup:
    kind: lightning
    lightning_dir: /var/lib/lightning/bitcoin
    lightning_rpc_file: /var/lib/lightning/bitcoin/lightning-rpc
    backup_dir: /var/backups/scnode
    recipients: "{{ scnode_backup_recipients }}"

- name: Back up the exchange database
  satoshiware.scnode.wallet_backup:
    kind: exchange
    database_url: sqlite:////var/lib/scnode-exchange/exchange.sqlite3
    backup_dir: /var/backups/scnode
    recipients: "{{ scnode_backup_recipients }}"
"""

RETURN = r"""
backup_file:
  description: Path of the encrypted archive (in check mode, the path it would have).
  returned: success
  type: str
  sample: /var/backups/scnode/chain-bitcoin-wallet-20261126T030000Z.tar.age
manifest_file:
  description: Path of the manifest beside it.
  returned: success
  type: str
  sample: /var/backups/scnode/chain-bitcoin-wallet-20261126T030000Z.manifest.json
manifest:
  description: The manifest written (not returned in check mode).
  returned: changed
  type: dict
  sample:
    format: scnode-backup-1
    kind: chain
    subject: bitcoin-wallet
    created: "2026-11-26T03:00:00Z"
    file: chain-bitcoin-wallet-20261126T030000Z.tar.age
    sha256: 9f2c0e5d8b1f4c7a6e3d2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f10
    size: 20480
    files:
      - name: wallet.dat
        size: 16384
        sha256: 3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555
    chain:
      chain: bitcoin
      network: main
      wallet: wallet
      height: 870000
      best_block: 00000000000000000001a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7
verification:
  description: What was checked on the clear copy before it was encrypted.
  returned: changed
  type: dict
  sample: {sqlite_integrity: ok, scratch_restore: "12 descriptors equal the live wallet's"}
removed:
  description: Files retention removed (in check mode, would remove).
  returned: success
  type: list
  elements: str
  sample: [/var/backups/scnode/chain-bitcoin-wallet-20261101T030000Z.tar.age]
engine:
  description: What encrypted the backup, C(pyrage) or C(cli) (the age command).
  returned: success
  type: str
  sample: pyrage
"""

import shutil  # noqa: E402
import socket  # noqa: E402
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
    chain_rpc_argument_spec,
    client_from_module_params,
)


def argument_spec() -> dict[str, Any]:
    spec = chain_rpc_argument_spec()
    spec.update(
        kind={"type": "str", "choices": ["chain", "lightning", "exchange"], "default": "chain"},
        name={"type": "str"},
        backup_dir={"type": "path", "required": True},
        recipients={"type": "list", "elements": "str", "required": True, "no_log": False},
        encryption_engine={"type": "str", "choices": list(backup.ENGINES), "default": "auto"},
        keep_daily={"type": "int", "default": 7},
        keep_weekly={"type": "int", "default": 4},
        staging_dir={"type": "path"},
        staging_owner={"type": "str"},
        chain={"type": "str"},
        verify={"type": "str", "choices": ["full", "integrity", "none"], "default": "full"},
        lightning_dir={"type": "path"},
        lightning_db={"type": "path"},
        lightning_rpc_file={"type": "path"},
        database_url={"type": "str", "no_log": True},
    )
    return spec


def _descriptors(client: ChainRpcClient, wallet: str) -> list[str]:
    answer = client.wallet_call("listdescriptors", [], wallet=wallet)
    return sorted(str(item["desc"]) for item in answer["descriptors"])


def _scratch_restore(client: ChainRpcClient, work: str, copy: str, live: str) -> str:
    """Load the copy as a scratch wallet (an absolute path inside ``work``) and compare keys."""
    scratch = str(Path(work) / "scratch-wallet")
    client.call("restorewallet", [scratch, copy, False])
    try:
        restored = _descriptors(client, scratch)
    finally:
        client.call("unloadwallet", [scratch, False])
    expected = _descriptors(client, live)
    if restored != expected:
        raise backup.BackupError(
            "the wallet copy restored into a scratch wallet has other descriptors than the"
            " live wallet %s: the backup is not usable" % live
        )
    return "%d descriptors equal the live wallet's" % len(expected)


def collect_chain(params: dict[str, Any], work: str, check_mode: bool) -> dict[str, Any]:
    """backupwallet into ``work``, verify; returns the manifest section and the files."""
    client = client_from_module_params(params)
    wallet = params["wallet"]
    info = client.call("getblockchaininfo")
    client.wallet_call("getwalletinfo", wallet=wallet)  # fails clearly when it is not loaded
    section = {
        "chain": params["chain"],
        "network": info["chain"],
        "wallet": wallet,
        "height": info["blocks"],
        "best_block": info["bestblockhash"],
    }
    if check_mode:
        return {"section": section, "members": [], "verification": {}}
    copy = str(Path(work) / "wallet.dat")
    client.wallet_call("backupwallet", [copy], wallet=wallet)
    verification: dict[str, str] = {}
    if params["verify"] != "none":
        if backup.is_sqlite(copy):
            result = backup.sqlite_integrity(copy)
            if result != "ok":
                raise backup.BackupError("the wallet copy fails PRAGMA integrity_check: " + result)
            verification["sqlite_integrity"] = result
        elif params["verify"] == "integrity":
            raise backup.BackupError(
                "the wallet copy is not a SQLite database; use verify=full to check it by"
                " restoring it into a scratch wallet"
            )
        else:
            verification["sqlite_integrity"] = "not a SQLite file (checked by restoring it)"
    if params["verify"] == "full":
        verification["scratch_restore"] = _scratch_restore(client, work, copy, wallet)
    return {"section": section, "members": [("wallet.dat", copy)], "verification": verification}


def collect_lightning(params: dict[str, Any], work: str, check_mode: bool) -> dict[str, Any]:
    directory = Path(params["lightning_dir"])
    database = Path(params["lightning_db"] or directory / "lightningd.sqlite3")
    hsm_secret = directory / "hsm_secret"
    recover = directory / "emergency.recover"
    for path in (hsm_secret, database):
        if not path.is_file():
            raise backup.BackupError("%s does not exist: nothing to back up" % path)
    section: dict[str, Any] = {"files_missing": [] if recover.is_file() else ["emergency.recover"]}
    if params["lightning_rpc_file"]:
        info = backup.lightning_call(params["lightning_rpc_file"], "getinfo")
        section.update(
            node_id=info["id"], network=info.get("network"), height=info.get("blockheight")
        )
    if check_mode:
        return {"section": section, "members": [], "verification": {}}
    members = []
    secret_copy = str(Path(work) / "hsm_secret")
    shutil.copyfile(hsm_secret, secret_copy)
    members.append(("hsm_secret", secret_copy))
    db_copy = str(Path(work) / "lightningd.sqlite3")
    backup.sqlite_copy(str(database), db_copy)
    members.append(("lightningd.sqlite3", db_copy))
    if recover.is_file():
        recover_copy = str(Path(work) / "emergency.recover")
        shutil.copyfile(recover, recover_copy)
        members.append(("emergency.recover", recover_copy))
    return {"section": section, "members": members, "verification": {"sqlite_integrity": "ok"}}


def collect_exchange(params: dict[str, Any], work: str, check_mode: bool) -> dict[str, Any]:
    url = params["database_url"]
    engine = backup.database_kind(url)
    section: dict[str, Any] = {"database": engine}
    if engine == "sqlite":
        path = unquote(backup.sqlite_path(url))
        if not Path(path).is_file():
            raise backup.BackupError("the exchange database %s does not exist" % path)
        section["path"] = path
        if check_mode:
            return {"section": section, "members": [], "verification": {}}
        copy = str(Path(work) / "exchange.sqlite3")
        backup.sqlite_copy(path, copy)
        return {
            "section": section,
            "members": [("exchange.sqlite3", copy)],
            "verification": {"sqlite_integrity": "ok"},
        }
    if check_mode:
        backup.pg_table_count(url)  # proves the database answers
        return {"section": section, "members": [], "verification": {}}
    dump = str(Path(work) / "exchange.pgdump")
    backup.pg_dump(url, dump)
    return {
        "section": section,
        "members": [("exchange.pgdump", dump)],
        "verification": {"pg_restore_list": "ok"},
    }


COLLECTORS = {"chain": collect_chain, "lightning": collect_lightning, "exchange": collect_exchange}


def default_name(params: dict[str, Any]) -> str:
    if params["name"]:
        return str(params["name"])
    if params["kind"] == "chain":
        return "%s-%s" % (params["chain"], params["wallet"])
    return "lightningd" if params["kind"] == "lightning" else "exchange"


def run_backup(params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """The whole backup; every file it writes outside the staging area is written last."""
    kind = params["kind"]
    recipients = backup.validate_recipients(params["recipients"])
    engine = backup.age_engine(params["encryption_engine"])
    if params["keep_daily"] < 0 or params["keep_weekly"] < 0:
        raise backup.BackupError("keep_daily and keep_weekly cannot be negative")
    backup_dir = params["backup_dir"]
    subject = default_name(params)
    created = backup.utc_now()
    base = backup.backup_basename(kind, subject, created, backup_dir)
    archive_path = str(Path(backup_dir) / (base + backup.ARCHIVE_SUFFIX))
    manifest_path = str(Path(backup_dir) / (base + backup.MANIFEST_SUFFIX))
    existing = backup.list_backups(backup_dir, kind, subject)
    if check_mode:
        collected = COLLECTORS[kind](params, "", True)
        expire = backup.expired(
            [*existing, (created, manifest_path)], params["keep_daily"], params["keep_weekly"]
        )
        return {
            "changed": True,
            "backup_file": archive_path,
            "manifest_file": manifest_path,
            "removed": expire,
            "engine": engine,
            "msg": "would back up %s %s (%s)" % (kind, subject, collected["section"]),
        }

    backup.private_dir(backup_dir)
    staging = params["staging_dir"] or str(Path(backup_dir) / ".staging")
    backup.private_dir(staging, params["staging_owner"])
    work = tempfile.mkdtemp(prefix="backup-", dir=staging)
    try:
        backup.private_dir(work, params["staging_owner"])
        collected = COLLECTORS[kind](params, work, False)
        clear_archive = str(Path(work) / "archive.tar")
        files = backup.make_archive(collected["members"], clear_archive)
        partial = Path(archive_path + ".partial")
        try:
            backup.encrypt_file(clear_archive, str(partial), recipients, engine)
            partial.chmod(0o600)
            partial.replace(archive_path)
        finally:
            partial.unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    manifest = {
        "format": backup.MANIFEST_FORMAT,
        "kind": kind,
        "subject": subject,
        "created": created.strftime(backup.CREATED_FORMAT),
        "host": socket.gethostname(),
        "file": Path(archive_path).name,
        "sha256": backup.sha256_file(archive_path),
        "size": Path(archive_path).stat().st_size,
        "recipients": recipients,
        "engine": engine,
        "files": files,
        kind: collected["section"],
    }
    backup.write_json(manifest_path, manifest)
    removed: list[str] = []
    for path in backup.expired(
        [*existing, (created, manifest_path)], params["keep_daily"], params["keep_weekly"]
    ):
        removed.extend(backup.remove_backup(path))
    return {
        "changed": True,
        "backup_file": archive_path,
        "manifest_file": manifest_path,
        "manifest": manifest,
        "verification": collected["verification"],
        "removed": removed,
        "engine": engine,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=CHAIN_RPC_MUTUALLY_EXCLUSIVE,
        required_together=CHAIN_RPC_REQUIRED_TOGETHER,
        required_if=[
            ("kind", "chain", ("chain", "wallet", "staging_dir")),
            ("kind", "lightning", ("lightning_dir",)),
            ("kind", "exchange", ("database_url",)),
        ],
        supports_check_mode=True,
    )
    try:
        result = run_backup(module.params, module.check_mode)
    except ChainRpcError as exc:
        module.fail_json(msg=str(exc), rpc_code=exc.code)
    except (backup.BackupError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
