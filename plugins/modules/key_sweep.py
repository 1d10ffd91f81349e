#!/usr/bin/python
# Copyright (c) 2026 Satoshiware SC Node developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: key_sweep
short_description: Sweep the funds of paper private keys (WIF) into the node's wallet
version_added: 0.1.0
description:
  - Checks each private key (WIF) locally, then finds its coins in the node's UTXO set with
    C(scantxoutset) and C(combo(<key>)) (P2PK, P2PKH, P2SH-P2WPKH and P2WPKH outputs of the key).
  - Spends them all in one transaction to a fresh address of the node's wallet
    (C(getnewaddress)) at O(fee_rate), signed by the node with C(signrawtransactionwithkey), and
    broadcasts it with C(sendrawtransaction). Returns the txid, the amount and the fee.
  - A key of the wrong network (a mainnet key on a test or regtest node, or the reverse) is
    refused before any key is sent to the node. AZCoin uses Bitcoin's WIF prefixes, so a WIF
    cannot say which of the two chains holds its coins; sweep on each chain's node to collect
    both.
  - Outputs that an unconfirmed transaction already spends (for example an earlier sweep still in
    the mempool), immature coinbase outputs, and outputs worth less than the fee of spending them
    are left out and listed in RV(skipped). No spendable coins means C(changed=false).
  - When the fee would exceed the value, or the rest would be dust, nothing is sent and the
    module fails saying so.
  - The keys are never logged, never returned and never part of an error message (keys are named
    by their position, as in C(key 2)).
  - Coins only in the mempool are not found, because C(scantxoutset) reads confirmed outputs;
    sweep after they confirm.
author:
  - Satoshiware SC Node developers (@satoshiware)
extends_documentation_fragment:
  - satoshiware.scnode.chain_rpc
options:
  keys:
    description:
      - The private keys to sweep, in Wallet Import Format (C(5...), C(K...), C(L...) on mainnet;
        C(9...), C(c...) on testnet, signet and regtest).
    type: list
    elements: str
    required: true
  fee_rate:
    description:
      - Fee rate of the sweep transaction in sat/vB. The fee is computed on the largest possible
        size of the signed transaction, so the real rate is at least this.
      - When unset, the node's C(estimatesmartfee) for O(conf_target) blocks is used.
    type: float
  conf_target:
    description: Confirmation target in blocks for the fee estimate when O(fee_rate) is unset.
    type: int
    default: 6
  label:
    description: Label of the fresh wallet address that receives the funds.
    type: str
    default: sweep
  address_type:
    description:
      - Address type of the fresh wallet address (C(getnewaddress)); the wallet's default when
        unset. AZCoin has no base58 addresses.
    type: str
    choices: [bech32, bech32m, p2sh-segwit, legacy]
attributes:
  check_mode:
    support: full
    description:
      - Finds the funds and reports what would be swept and the fee (sized for a P2WPKH address),
        without asking the wallet for an address and without sending anything.
  diff_mode:
    support: none
    description: No file changes.
  platform:
    support: full
    platforms: posix
    description: Runs on any host that reaches the node's RPC port (normally the node itself).
  idempotent:
    support: full
    description:
      - A second run finds the coins already spent by the first sweep (in the mempool or
        confirmed) and changes nothing.
notes:
  - The RPC user needs C(scantxoutset), C(gettxout), C(getnewaddress), C(getaddressinfo),
    C(createrawtransaction), C(signrawtransactionwithkey), C(decoderawtransaction) and
    C(sendrawtransaction); only the node's privileged user has them (the sweep and backup user).
  - C(scantxoutset) reads the whole UTXO set; on mainnet it takes minutes. Raise O(rpc_timeout).
"""

EXAMPLES = r"""
- name: Sweep two paper keys into the Bitcoin node's wallet at 5 sat/vB
  satoshiware.scnode.key_sweep:
    rpc_url: http://127.0.0.1:8332
    rpc_cookie_file: /var/lib/bitcoin/.cookie
    rpc_timeout: 900
    wallet: wallet
    keys: "{{ paper_keys }}"
    fee_rate: 5
  register: swept

- name: See what the keys hold on the AZCoin chain, without sweeping
  satoshiware.scnode.key_sweep:
    rpc_url: http://127.0.0.1:19332
    rpc_cookie_file: /var/lib/azcoin/.cookie
    wallet: wallet
    keys: "{{ paper_keys }}"
  check_mode: true
  register: azcoin_funds
"""

RETURN = r"""
txid:
  description: Id of the broadcast sweep transaction.
  returned: when something was swept
  type: str
  sample: 1229965db14f46bc5c9c7c063268db47eeb7e308560932159f27a3e1a884189d
address:
  description: The wallet address that received the funds.
  returned: when something was swept
  type: str
  sample: bc1qaehyh7evzlmehntt2ppxjkd6uzvf302fs5na6m
amount_sat:
  description: Satoshis paid to the wallet (the spent outputs minus the fee).
  returned: when there was something to sweep (check mode too)
  type: int
  sample: 99989890
fee_sat:
  description: The fee of the sweep transaction in satoshis.
  returned: when there was something to sweep (check mode too)
  type: int
  sample: 110
fee_rate_sat_vb:
  description: The fee rate, in sat/vB of the signed transaction (of the rate used in check mode).
  returned: when there was something to sweep (check mode too)
  type: float
  sample: 1.02
vsize:
  description: Virtual size of the transaction (the signed one's; an upper bound in check mode).
  returned: when there was something to sweep (check mode too)
  type: int
  sample: 110
found_sat:
  description: Satoshis in every output of the keys found in the UTXO set, spendable or not.
  returned: always
  type: int
  sample: 100000000
inputs:
  description: The outputs spent by the sweep.
  returned: always
  type: list
  elements: dict
  sample: [{"txid": "08e2...353d", "vout": 0, "amount_sat": 100000000, "type": "p2wpkh",
            "height": 102}]
skipped:
  description: Outputs found but not spent, each with its C(reason).
  returned: always
  type: list
  elements: dict
  sample: [{"txid": "21ed...ae71", "vout": 1, "amount_sat": 300, "type": "p2wpkh",
            "reason": "uneconomic: spending it costs 680 sat at 10 sat/vB, more than it holds"}]
chain:
  description: The node's network (C(main), C(test), C(signet), C(regtest)).
  returned: always
  type: str
  sample: main
height:
  description: Height of the UTXO set that was scanned.
  returned: always
  type: int
  sample: 870000
"""

from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.satoshiware.scnode.plugins.module_utils._chain_rpc import (  # noqa: E402
    CHAIN_RPC_MUTUALLY_EXCLUSIVE,
    CHAIN_RPC_REQUIRED_TOGETHER,
    ChainRpcError,
    chain_rpc_argument_spec,
    client_from_module_params,
)
from ansible_collections.satoshiware.scnode.plugins.module_utils._sweep import (  # noqa: E402
    SweepError,
    run_sweep,
)


def argument_spec() -> dict[str, Any]:
    spec = chain_rpc_argument_spec()
    spec.update(
        keys={"type": "list", "elements": "str", "required": True, "no_log": True},
        fee_rate={"type": "float"},
        conf_target={"type": "int", "default": 6},
        label={"type": "str", "default": "sweep"},
        address_type={"type": "str", "choices": ["bech32", "bech32m", "p2sh-segwit", "legacy"]},
    )
    return spec


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=CHAIN_RPC_MUTUALLY_EXCLUSIVE,
        required_together=CHAIN_RPC_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    params = module.params
    try:
        client = client_from_module_params(params)
        result = run_sweep(
            client,
            params["keys"],
            params["fee_rate"],
            params["label"],
            params["address_type"],
            module.check_mode,
            params["conf_target"],
        )
    except SweepError as exc:
        module.fail_json(msg=exc.message, **exc.details)
    except ChainRpcError as exc:
        module.fail_json(msg=str(exc), rpc_code=exc.code, http_status=exc.http_status)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
