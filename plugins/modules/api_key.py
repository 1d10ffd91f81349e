#!/usr/bin/python
# Copyright (c) 2026 Satoshiware SC Node developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: api_key
short_description: Create, rotate and revoke the API keys of the node's apps
version_added: 0.1.0
description:
  - Manages the keys of one app's keys file (the chain APIs, the stratum stats APIs, the
    exchange's owner keys, later the Lightning API). The server side keeps only the SHA-256 of
    each key's secret; the client side (the program that calls the API) keeps the key itself in
    a token file (O(token_file)) or in a variable of its env file (O(env_file), O(env_var)).
  - A key is known by its O(name) (one name per client, e.g. C(sc-node-deposit)). V(present)
    makes sure the client holds a valid key of that name, creating one if needed.
    V(rotated) issues a new key when the client's key is older than O(max_age) (always with the
    default 0). The new key's hash goes to the keys file first, then the key to the client,
    and the earlier keys of the name stay valid for O(grace_period) seconds (C(not_after)), so a
    client still using one keeps working until it re-reads its key or restarts. V(absent)
    revokes at once, by O(key_id) or every key of O(name). M(satoshiware.scnode.api_key_info)
    lists the keys.
  - Keys past their C(not_after) are removed from the file by every change (O(purge_expired)).
  - The apps re-read their keys file when it changes, so no app restarts for its server side.
    A client that reads its key only at start must be restarted within the grace period (the
    C(rotate_api_keys.yml) playbook does).
  - Returns key ids, names, scopes and ages, never a hash and never a key, unless
    O(return_secret) is set on a task with C(no_log).
author:
  - Satoshiware SC Node developers (@satoshiware)
options:
  keys_file:
    description:
      - The app's keys file (JSON, hashes only), for example
        C(/etc/scnode/chain-api-bitcoin/api-keys.json).
      - Written atomically (temp file and rename), mode O(keys_file_mode), keeping its group.
    type: path
    required: true
  state:
    description: What to do; see the description.
    type: str
    choices: [present, rotated, absent]
    default: present
  name:
    description:
      - Name of the key (who uses it). Required for V(present) and V(rotated); with V(absent)
        every key of the name is revoked.
    type: str
  key_id:
    description: Id of the one key to revoke with V(absent) (8 hex characters).
    type: str
  scopes:
    description:
      - Scopes of the key (C(read), C(deposit), C(send), C(owner), C(metrics), ...). Needed to
        create the first key of a name; a rotation keeps the current key's scopes unless given.
        Changed scopes are applied to the current key in place.
    type: list
    elements: str
  grace_period:
    description: Seconds the superseded keys stay valid after a new key of the name is issued.
    type: int
    default: 86400
  max_age:
    description:
      - With V(rotated), issue a new key only when the current one is at least this many seconds
        old (0 = on every run). Makes a scheduled rotation idempotent within the period.
    type: int
    default: 0
  purge_expired:
    description: Remove the keys past their C(not_after) from the file whenever it is written.
    type: bool
    default: true
  token_file:
    description:
      - The client's token file (the key and a newline). Created when missing with
        O(client_owner), O(client_group) and O(client_mode); an existing file keeps its owner.
      - Mutually exclusive with O(env_file).
    type: path
  env_file:
    description:
      - The client's env file (C(NAME=value) lines, as systemd's C(EnvironmentFile=) and the
        apps' settings read them). Only the line of O(env_var) is replaced; mode and owner stay.
    type: path
  env_var:
    description: The variable of O(env_file) that holds the key (or the JSON around it).
    type: str
  env_json_path:
    description:
      - When O(env_var) holds JSON (e.g. the exchange's C(SCNODE_EXCHANGE_CHAINS)), the path of
        the key inside it, e.g. C([btc, api_key]).
    type: list
    elements: str
  client_owner:
    description: Owner of a token or env file the module creates.
    type: str
  client_group:
    description: Group of a token or env file the module creates.
    type: str
  client_mode:
    description: Mode of a token or env file the module creates.
    type: str
    default: "0600"
  keys_file_group:
    description: Group of the keys file (the app's service group); the existing group when unset.
    type: str
  keys_file_mode:
    description: Mode of the keys file.
    type: str
    default: "0640"
  return_secret:
    description:
      - Return the new key in RV(token). Only on a task with C(no_log), else the module fails.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Says what would change (new key ids included) and writes nothing.
  diff_mode:
    support: full
    description: Shows the keys file's keys before and after (ids, names, scopes, dates; no hashes).
  platform:
    support: full
    platforms: posix
    description: Runs on the host that holds the keys file and the client's file.
  idempotent:
    support: partial
    description:
      - V(present) and V(absent) are idempotent; V(rotated) is with O(max_age) set.
"""

EXAMPLES = r"""
- name: Rotate the exchange's deposit key for the Bitcoin chain API at most once a week
  satoshiware.scnode.api_key:
    keys_file: /etc/scnode/chain-api-bitcoin/api-keys.json
    name: sc-node-deposit
    state: rotated
    max_age: 604800
    grace_period: 3600
    env_file: /etc/scnode/exchange/settings.env
    env_var: SCNODE_EXCHANGE_CHAINS
    env_json_path: [btc, api_key]
  register: rotated

- name: Make sure the monitoring has a read key in its token file
  satoshiware.scnode.api_key:
    keys_file: /etc/scnode/chain-api-azcoin/api-keys.json
    name: monitoring
    scopes: [read]
    token_file: /etc/scnode/keys/chain-api-azcoin-monitoring.token

- name: Revoke a leaked key now
  satoshiware.scnode.api_key:
    keys_file: /etc/scnode/chain-api-bitcoin/api-keys.json
    state: absent
    key_id: 3f9a0c12
"""

RETURN = r"""
key_id:
  description: Id of the key the client holds after the run (new or kept).
  returned: with state present or rotated
  type: str
  sample: 3f9a0c12
age_seconds:
  description: Age of that key in seconds.
  returned: with state present or rotated
  type: int
  sample: 0
reason:
  description: Why a key was issued (or why the keys file changed).
  returned: when changed
  type: str
  sample: "the key is 604812 s old (max_age 604800 s)"
previous_key_ids:
  description: Ids of the keys of the name that now end after the grace period.
  returned: when a new key superseded others
  type: list
  elements: str
  sample: ["0b1c2d3e"]
previous_not_after:
  description: When the superseded keys stop working (ISO 8601, UTC).
  returned: when a new key superseded others
  type: str
  sample: "2026-11-27T05:00:00+00:00"
client_updated:
  description:
    - Whether the client's token or env file got a new key (restart the client if it reads its
      key only at start).
  returned: when a key was issued
  type: bool
  sample: true
client:
  description: Where the client keeps its key.
  returned: with a client and state present or rotated
  type: str
  sample: /etc/scnode/keys/chain-api-bitcoin-read.token
revoked_key_ids:
  description: Ids of the keys removed by state absent.
  returned: with state absent
  type: list
  elements: str
  sample: ["3f9a0c12"]
purged_key_ids:
  description: Ids of the keys removed because their grace period had ended.
  returned: with a state that writes
  type: list
  elements: str
  sample: []
keys:
  description: The keys of the file after the run.
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
token:
  description: The new key. Only with O(return_secret), on a task with C(no_log).
  returned: when a key was issued and O(return_secret) is set
  type: str
  sample: scnk_3f9a0c12_...
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
        "state": {
            "type": "str",
            "default": "present",
            "choices": ["present", "rotated", "absent"],
        },
        "name": {"type": "str"},
        "key_id": {"type": "str", "no_log": False},
        "scopes": {"type": "list", "elements": "str"},
        "grace_period": {"type": "int", "default": 86400},
        "max_age": {"type": "int", "default": 0},
        "purge_expired": {"type": "bool", "default": True},
        "token_file": {"type": "path", "no_log": False},
        "env_file": {"type": "path"},
        "env_var": {"type": "str"},
        "env_json_path": {"type": "list", "elements": "str"},
        "client_owner": {"type": "str"},
        "client_group": {"type": "str"},
        "client_mode": {"type": "str", "default": "0600"},
        "keys_file_group": {"type": "str", "no_log": False},
        "keys_file_mode": {"type": "str", "default": "0640", "no_log": False},
        "return_secret": {"type": "bool", "default": False, "no_log": False},
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("token_file", "env_file")],
        required_together=[("env_file", "env_var")],
        required_if=[
            ("state", "present", ["name"]),
            ("state", "rotated", ["name"]),
            ("state", "absent", ["name", "key_id"], True),
        ],
        supports_check_mode=True,
    )
    params = module.params
    if params["return_secret"] and not module.no_log:
        module.fail_json(msg="return_secret needs no_log: true on the task")
    for option in ("grace_period", "max_age"):
        if params[option] < 0:
            module.fail_json(msg="%s must not be negative" % option)
    for option in ("client_mode", "keys_file_mode"):
        try:
            int(params[option], 8)
        except ValueError:
            module.fail_json(msg="%s must be an octal mode such as 0640" % option)
    try:
        result = ApiKeyTask(params, module.check_mode).run()
    except (ApiKeyModuleError, OSError) as exc:
        module.fail_json(msg=str(exc))
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
