#!/usr/bin/python
# Copyright (c) 2026 Satoshiware SC Node developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: chain_node_rpc_credentials
short_description: Keep the RPC password of a chain daemon on the node and derive its rpcauth line
description:
  - Generates the RPC password on the node on the first run and stores it in the chain API's
    client env file (the only place the clear password lives), then reads it back on later runs.
    It is never regenerated; a given O(password) replaces it.
  - Derives the C(rpcauth=) value (salted HMAC-SHA256, as Bitcoin Core's C(share/rpcauth)) and
    keeps the salt already in the daemon's config when it still matches the password, so a
    re-run renders the same config.
version_added: "0.1.0"
author:
  - Satoshiware SC Node developers (@satoshiware)
options:
  path:
    description: The client env file (written atomically, owner root, O(group), mode 0640).
    type: path
    required: true
  conf_path:
    description: The daemon config file whose C(rpcauth=) line holds the salt to keep.
    type: path
    required: true
  group:
    description: Group that may read the env file (the daemon's group).
    type: str
    required: true
  rpc_user:
    description: The rpcauth user name.
    type: str
    required: true
  password:
    description: A password from the inventory or vault; replaces the stored one when given.
    type: str
    required: false
  env_prefix:
    description: Prefix of the keys written to the env file.
    type: str
    default: SCNODE_CHAIN_API_
  settings:
    description: Further non-secret keys (without prefix) to write, e.g. RPC_URL, WALLET.
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    description: Says whether the env file would change and returns rpcauth, writing nothing.
  diff_mode:
    support: none
    description: No diff, the file holds a secret.
  platform:
    platforms: posix
    support: full
    description: Debian nodes (any POSIX host with Python 3).
"""

EXAMPLES = r"""
- name: RPC credentials of bitcoind
  satoshiware.scnode.chain_node_rpc_credentials:
    path: /etc/bitcoin/chain-api.env
    conf_path: /etc/bitcoin/bitcoin.conf
    group: bitcoin
    rpc_user: satoshi
    settings:
      RPC_URL: http://127.0.0.1:8332
  no_log: true
  register: creds
"""

RETURN = r"""
rpcauth:
  description: The value of the C(rpcauth=) config line.
  returned: always
  type: str
  sample: "satoshi:8e1d8e6d2c1c4d25a8a7b4f0c4c1e2f3$7f5d..."
password:
  description: The clear RPC password (register it only on a task with C(no_log)).
  returned: always
  type: str
  sample: "Vx3..."
generated:
  description: Whether a new password was made on this run.
  returned: always
  type: bool
  sample: false
"""

import grp  # noqa: E402
import hashlib  # noqa: E402
import hmac  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def _read_env(path: Path) -> tuple[dict[str, str], str | None]:
    values: dict[str, str] = {}
    if not path.exists():
        return values, None
    text = path.read_text()
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _sep, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values, text


def _hmac(salt: str, password: str) -> str:
    return hmac.new(salt.encode(), password.encode(), hashlib.sha256).hexdigest()


def _existing_salt(conf_path: Path, user: str, password: str) -> str | None:
    """The salt of the config's rpcauth line for user, if that line matches password."""
    if not conf_path.exists():
        return None
    pattern = re.compile(r"^\s*rpcauth\s*=\s*" + re.escape(user) + r":([0-9a-f]+)\$([0-9a-f]+)\s*$")
    with open(conf_path) as handle:
        for line in handle:
            match = pattern.match(line)
            if match and hmac.compare_digest(_hmac(match.group(1), password), match.group(2)):
                return match.group(1)
    return None


def _render(prefix: str, rpc_user: str, password: str, settings: dict[str, Any]) -> str:
    lines = [
        "# Managed by satoshiware.scnode.chain_node: RPC client settings of this chain's API.",
        "# The clear RPC password lives only here (the daemon's config holds its rpcauth hash).",
        f"{prefix}RPC_USER={rpc_user}",
        f"{prefix}RPC_PASSWORD={password}",
    ]
    for key in sorted(settings):
        lines.append(f"{prefix}{key.upper()}={settings[key]}")
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, gid: int) -> None:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=".chain-api-env-")
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o640)
        os.fchown(fd, 0, gid)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            conf_path=dict(type="path", required=True),
            group=dict(type="str", required=True),
            rpc_user=dict(type="str", required=True),
            password=dict(type="str", required=False, no_log=True),
            env_prefix=dict(type="str", default="SCNODE_CHAIN_API_"),
            settings=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    params = module.params
    prefix = params["env_prefix"]
    if not re.match(r"^[a-z][a-z0-9_.-]*$", params["rpc_user"]):
        module.fail_json(msg="rpc_user must be lowercase letters, digits, _ . -")
    try:
        gid = grp.getgrnam(params["group"]).gr_gid
    except KeyError:
        if not module.check_mode:
            module.fail_json(msg=f"group {params['group']} does not exist")
        gid = 0

    env_path = Path(params["path"])
    conf_path = Path(params["conf_path"])
    values, current_text = _read_env(env_path)
    stored = values.get(prefix + "RPC_PASSWORD")
    generated = False
    if params["password"]:
        password = params["password"]
    elif stored:
        password = stored
    else:
        password = secrets.token_urlsafe(32)
        generated = True

    salt = _existing_salt(conf_path, params["rpc_user"], password)
    if salt is None:
        salt = secrets.token_hex(16)
    rpcauth = f"{params['rpc_user']}:{salt}${_hmac(salt, password)}"

    desired = _render(prefix, params["rpc_user"], password, params["settings"])
    changed = desired != current_text
    if not changed:
        info = env_path.stat()
        changed = (info.st_mode & 0o7777) != 0o640 or info.st_uid != 0 or info.st_gid != gid
    if changed and not module.check_mode:
        _write(env_path, desired, gid)
    module.exit_json(changed=changed, rpcauth=rpcauth, password=password, generated=generated)


if __name__ == "__main__":
    main()
