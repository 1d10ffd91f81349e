# Copyright (c) 2026 Satoshiware SC Node developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Connection options shared by every module that talks to a Bitcoin Core or AZCoin node."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  rpc_url:
    description:
      - URL of the node's JSON-RPC server, without credentials and without a C(/wallet/) path.
      - Bitcoin mainnet listens on port 8332, AZCoin on 19332, regtest on 18443.
    type: str
    default: http://127.0.0.1:8332
  rpc_user:
    description:
      - RPC user name, one of the node's C(rpcauth) users.
      - Required together with O(rpc_password). Leave both unset to use O(rpc_cookie_file).
    type: str
  rpc_password:
    description:
      - Password of O(rpc_user). Never logged and never shown in error messages.
    type: str
  rpc_cookie_file:
    description:
      - Path of the node's C(.cookie) file on the managed node, used instead of a user and
        password. It is read on every call because the node rewrites it each time it starts.
    type: path
  rpc_timeout:
    description:
      - Seconds to wait for the node's answer.
    type: float
    default: 30.0
  rpc_jsonrpc_version:
    description:
      - JSON-RPC version of the requests. V(1.0) works with every Bitcoin Core and AZCoin
        release; V(2.0) needs Bitcoin Core 28 or later. Answers of both kinds are understood.
    type: str
    choices: ['1.0', '2.0']
    default: '1.0'
  wallet:
    description:
      - Name of the wallet for wallet calls (the C(/wallet/<name>) endpoint). When unset,
        wallet calls go to the default endpoint, which works only while exactly one wallet
        is loaded.
    type: str
notes:
  - The connection options can be set once for all modules of the collection that talk to a
    chain node with C(module_defaults) and the action group C(group/satoshiware.scnode.chain_rpc).
"""
