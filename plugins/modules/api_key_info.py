#!/usr/bin/python
# Copyright (c) 2026 Satoshiware SC Node developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: api_key_info
short_description: List the API keys of one of the node's apps, with their ages
version_added: 0.1.0
description:
  - Reads an app's keys file (the one M(satoshiware.scnode.api_key) manages) and returns each
    key's id, name, scopes, creation time, age and end of validity. Never a hash, never a key.
  - With a client's O(token_file) or O(env_file), also says which key that client holds.
author:
  - Satoshiware SC Node developers (@satoshiware)
options:
  keys_file:
    description: The app's keys file, e.g. C(/etc/scnode/chain-api-bitcoin/api-keys.json).
    type: path
    required: true
  name:
    description: Only the keys of this name.
    type: str
  token_file:
    description: A client's token file; its key's id is returned in RV(client_key_id).
    type: path
  env_file:
    description: A client's env file holding its key in O(env_var).
    type: path
  env_var:
    description: The variable of O(env_file) that holds the key (or the JSON around it).
    type: str
  env_json_path:
    description: When O(env_var) holds JSON, the path of the key inside it.
    type: list
    elements: str
attributes:
  check_mode:
    support: full
    description: The module only reads.
  diff_mode:
    support: none
    description: Nothing changes.
  platform:
    support: full
    platforms: posix
    description: Runs on the host that holds the keys file.
  idempotent:
    support: full
    description: It never changes anything.
"""

EXAMPLES = r"""
- name: List the Bitcoin chain API's keys and which one the exchange's copy holds
  satoshiware.scnode.api_key_info:
    keys_file: /etc/scnode/chain-api-bitcoin/api-keys.json
    token_file: /etc/scnode/keys/chain-api-bitcoin-exchange.token
  register: bitcoin_api_keys

- name: Warn about keys older than 90 days
  ansible.builtin.debug:
    msg: "key {{ item.id }} ({{ item.name }}) is {{ item.age_seconds // 86400 }} days old"
  loop: "{{ bitcoin_api_keys.keys | selectattr('age_seconds', 'gt', 90 * 86400) }}"
"""

RETURN = r"""
keys:
  description: The keys of the file (of O(name) when given), oldest first as stored.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The key's id (also the middle part of the key itself).
      type: str
    name:
      description: Who the key is for.
      type: str
    scopes:
      description: What the key may do.
      type: list
      elements: str
    created:
      description: When the key was issued (ISO 8601, UTC).
      type: str
    age_seconds:
      description: The key's age in seconds.
      type: int
    not_after:
      description: When the key stops working; null for no end.
      type: str
    valid:
      description: Whether the key works now.
      type: bool
  sample: [{"id": "3f9a0c12", "name": "sc-node-read", "scopes": ["read"], "age_seconds": 30,
            "created": "2026-11-26T05:00:00+00:00", "not_after": null, "valid": true}]
client_key_id:
  description: Id of the key the client holds; null when it holds none in the right format.
  returned: with O(token_file) or O(env_file)
  type: str
  sample: 3f9a0c12
"""

from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.satoshiware.scnode.plugins.module_utils._apikeys import (  # noqa: E402
    ApiKeyModuleError,
    ApiKeyTask,
)


def argument_spec() -> dict[str, Any]:
    return {
        "keys_file": {"type": "path", "required": True},
        "name": {"type": "str"},
        "token_file": {"type": "path", "no_log": False},
        "env_file": {"type": "path"},
        "env_var": {"type": "str"},
        "env_json_path": {"type": "list", "elements": "str"},
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("token_file", "env_file")],
        required_together=[("env_file", "env_var")],
        supports_check_mode=True,
    )
    params = dict(module.params, state="list", client_mode="0600")
    try:
        result = ApiKeyTask(params, check_mode=True).run()
    except (ApiKeyModuleError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
