#!/usr/bin/python
# Copyright (c) 2026 Satoshiware SC Node developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: chain_info
short_description: Read the state of a Bitcoin Core or AZCoin node over JSON-RPC
version_added: 0.1.0
description:
  - Asks a Bitcoin Core or AZCoin node for its blockchain state (C(getblockchaininfo)) and its
    loaded wallets (C(listwallets)) and says whether it is in sync.
  - With O(wallet) set, also returns that wallet's balances in integer satoshis
    (C(getbalances)).
  - Read-only; it never changes the node.
author:
  - Satoshiware SC Node developers (@satoshiware)
extends_documentation_fragment:
  - satoshiware.scnode.chain_rpc
attributes:
  check_mode:
    support: full
    description: The module only reads, so it runs normally in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no difference to show.
  platform:
    support: full
    platforms: posix
    description: Runs on any host that reaches the node's RPC port.
  idempotent:
    support: full
    description: It never changes anything.
"""

EXAMPLES = r"""
- name: Read the Bitcoin node's state with the rpcauth user of the monitoring
  satoshiware.scnode.chain_info:
    rpc_url: http://127.0.0.1:8332
    rpc_user: monitor
    rpc_password: "{{ vault_bitcoin_monitor_password }}"
  register: bitcoin_state

- name: Wait until the AZCoin node has caught up, authenticating with its cookie
  satoshiware.scnode.chain_info:
    rpc_url: http://127.0.0.1:19332
    rpc_cookie_file: /var/lib/azcoin/.cookie
  register: azcoin_state
  until: azcoin_state.synced
  retries: 60
  delay: 10

- name: Share the connection settings with every chain module
  module_defaults:
    group/satoshiware.scnode.chain_rpc:
      rpc_url: http://127.0.0.1:8332
      rpc_cookie_file: /var/lib/bitcoin/.cookie
  block:
    - name: Read the balances of the node's wallet
      satoshiware.scnode.chain_info:
        wallet: scnode
      register: bitcoin_wallet
"""

RETURN = r"""
chain:
  description: Network the node runs (C(main), C(test), C(signet), C(regtest)).
  returned: success
  type: str
  sample: main
blocks:
  description: Height of the node's best validated block.
  returned: success
  type: int
  sample: 870000
headers:
  description: Height of the best header the node knows.
  returned: success
  type: int
  sample: 870002
synced:
  description:
    - True when the node has left the initial block download and has validated every header
      it knows.
  returned: success
  type: bool
  sample: false
verification_progress:
  description: The node's estimate of how much of the chain it has verified, from 0 to 1.
  returned: success
  type: float
  sample: 0.99999
pruned:
  description: Whether the node prunes old blocks.
  returned: success
  type: bool
  sample: true
prune_height:
  description: Lowest height with a complete block stored; only on pruned nodes.
  returned: when the node prunes
  type: int
  sample: 850123
blockchain_info:
  description:
    - The whole C(getblockchaininfo) answer, as the node sent it (numbers with decimals
      become floats; none of them is an amount).
    - C(warnings) is a string on AZCoin (v23) and a list on Bitcoin Core 28 and later.
  returned: success
  type: dict
  sample: {"chain": "main", "blocks": 870000, "headers": 870002, "pruned": true, "warnings": []}
wallets:
  description: Names of the wallets the node has loaded.
  returned: success
  type: list
  elements: str
  sample: ["scnode"]
balances_sat:
  description: Balances of O(wallet) in satoshis (integers).
  returned: when O(wallet) is set
  type: dict
  contains:
    trusted:
      description: Confirmed balance and own unconfirmed change.
      type: int
      sample: 150000000
    untrusted_pending:
      description: Unconfirmed incoming payments.
      type: int
      sample: 0
    immature:
      description: Coinbase outputs that are not spendable yet.
      type: int
      sample: 5000000000
"""

from decimal import Decimal  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.satoshiware.scnode.plugins.module_utils._chain_rpc import (  # noqa: E402
    CHAIN_RPC_MUTUALLY_EXCLUSIVE,
    CHAIN_RPC_REQUIRED_TOGETHER,
    ChainRpcClient,
    ChainRpcError,
    amount_to_sats,
    chain_rpc_argument_spec,
    client_from_module_params,
)


def _plain(value: Any) -> Any:
    """Make a parsed answer JSON-serializable (Decimal → float; only for non-amounts)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def read_chain_state(client: ChainRpcClient) -> dict[str, Any]:
    """Collect what the module returns; every RPC goes through the client."""
    info = client.call("getblockchaininfo")
    wallets = client.call("listwallets")
    state: dict[str, Any] = {
        "chain": info["chain"],
        "blocks": info["blocks"],
        "headers": info["headers"],
        "synced": (not info.get("initialblockdownload", False))
        and info["blocks"] >= info["headers"],
        "verification_progress": float(info.get("verificationprogress", 0)),
        "pruned": bool(info.get("pruned", False)),
        "blockchain_info": _plain(info),
        "wallets": list(wallets),
    }
    if "pruneheight" in info:
        state["prune_height"] = info["pruneheight"]
    if client.wallet is not None:
        mine = client.wallet_call("getbalances")["mine"]
        state["balances_sat"] = {
            key: amount_to_sats(mine.get(key, 0))
            for key in ("trusted", "untrusted_pending", "immature")
        }
    return state


def main() -> None:
    module = AnsibleModule(
        argument_spec=chain_rpc_argument_spec(),
        mutually_exclusive=CHAIN_RPC_MUTUALLY_EXCLUSIVE,
        required_together=CHAIN_RPC_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    try:
        state = read_chain_state(client_from_module_params(module.params))
    except ChainRpcError as exc:
        module.fail_json(msg=str(exc), rpc_code=exc.code, http_status=exc.http_status)
    module.exit_json(changed=False, **state)


if __name__ == "__main__":
    main()
