# Copyright (c) 2026 Satoshiware SC Node developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Sweeping paper keys (WIF) into a node's wallet, for the ``key_sweep`` module.

Private to this collection (leading underscore): its interface may change between releases.

The node does the cryptography (``scantxoutset`` with ``combo(<WIF>)``, ``createrawtransaction``,
``signrawtransactionwithkey``); this file only decodes a WIF's base58check envelope to check its
network byte before any key leaves for the node, sizes the transaction for the fee, and keeps
every key out of every message.

What a WIF can and cannot say: its first byte is 0x80 for mainnet keys and 0xef for testnet,
signet and regtest keys, and AZCoin uses Bitcoin's prefixes (PROTOCOLS.md). So a key is checked
against the node's *network* (main or not); whether its funds sit on Bitcoin or AZCoin is a
question for each chain's UTXO set: the same key may hold coins on both, and each chain's node
sweeps its own.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.satoshiware.scnode.plugins.module_utils._chain_rpc import (
    ChainRpcClient,
    ChainRpcError,
    amount_to_sats,
    sats_to_amount,
)

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
WIF_PREFIX_MAIN = 0x80
WIF_PREFIX_TEST = 0xEF
# Bitcoin Core's COINBASE_MATURITY; AZCoin keeps it (100 blocks).
COINBASE_MATURITY = 100
# Bitcoin Core's default -dustrelayfee (3000 sat/kvB), used for the dust limit of the output.
DUST_RELAY_FEE_SAT_PER_KVB = 3000

# Weight of one input by the type of the output it spends, with 72-byte signatures (the largest
# DER signature): the fee is computed on this upper bound, so it never falls short of the rate.
#   P2WPKH: 41 non-witness bytes * 4 + witness (1 + 1 + 72 + 1 + 33)
#   P2SH-P2WPKH: (41 + 23-byte redeem script push) * 4 + the same witness
#   P2PKH: (41 + 1 + 72 + 1 + 33 scriptSig) * 4; P2PK: (41 + 1 + 72) * 4
_INPUT_WEIGHT = {
    "p2wpkh": 41 * 4 + 108,
    "p2sh-p2wpkh": (41 + 23) * 4 + 108,
    "p2pkh": (41 + 107) * 4,
    "p2pk": (41 + 73) * 4,
}
# version + locktime + input and output counts (4 + 4 + 1 + 1 bytes), plus the segwit marker
# and flag (2 weight units) because combo() inputs are mostly segwit.
_TX_OVERHEAD_WEIGHT = 10 * 4 + 2


class SweepError(Exception):
    """A refusal with a message for the operator; it never contains a key."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        index = _B58_ALPHABET.find(char)
        if index < 0:
            raise ValueError("not base58")
        number = number * 58 + index
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\x00" * pad + body


@dataclass(frozen=True)
class WifInfo:
    """What the envelope of a WIF says (never the secret)."""

    network: str  # "main" or "test" (testnet, signet and regtest share the prefix)
    compressed: bool


def decode_wif(text: str) -> WifInfo:
    """Check a WIF's base58check envelope and return its network; ``ValueError`` if invalid.

    The message of the error names the problem, never the key.
    """
    try:
        raw = _b58decode(text.strip())
    except ValueError:
        raise ValueError("is not base58 text") from None
    if len(raw) < 5:
        raise ValueError("is too short to be a WIF key")
    payload, checksum = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != checksum:
        raise ValueError("has a wrong checksum (a typo?)")
    if payload[0] not in (WIF_PREFIX_MAIN, WIF_PREFIX_TEST):
        raise ValueError("is not a WIF private key (prefix 0x%02x)" % payload[0])
    if len(payload) == 34 and payload[-1] == 0x01:
        compressed = True
    elif len(payload) == 33:
        compressed = False
    else:
        raise ValueError("has the wrong length for a WIF private key")
    secret = int.from_bytes(payload[1:33], "big")
    # secp256k1 group order: a secret must lie in [1, n-1]
    if not 0 < secret < 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141:
        raise ValueError("is outside the range of secp256k1 private keys")
    return WifInfo("main" if payload[0] == WIF_PREFIX_MAIN else "test", compressed)


def key_network_for_chain(chain: str) -> str:
    """The WIF network of a node's ``getblockchaininfo.chain`` (main, test, signet, regtest)."""
    return "main" if chain == "main" else "test"


def script_kind(script_hex: str) -> str | None:
    """The kind of a scriptPubKey that ``combo()`` yields, or None for any other."""
    script = bytes.fromhex(script_hex)
    if len(script) == 22 and script[:2] == b"\x00\x14":
        return "p2wpkh"
    if len(script) == 23 and script[:2] == b"\xa9\x14" and script[-1] == 0x87:
        return "p2sh-p2wpkh"
    if len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[-2:] == b"\x88\xac":
        return "p2pkh"
    if len(script) in (35, 67) and script[0] in (33, 65) and script[-1] == 0xAC:
        return "p2pk"
    return None


_SH_WPKH_DESC = re.compile(r"^sh\(wpkh\((?:\[[0-9a-fA-F/'h]*\])?([0-9a-fA-F]{66})\)\)")


def hash160(data: bytes) -> bytes:
    """RIPEMD-160 of SHA-256 (OpenSSL's ripemd160, in its default provider since 3.0.7)."""
    return hashlib.new("ripemd160", hashlib.sha256(data).digest()).digest()


def redeem_script_of(desc: str, script_hex: str) -> str:
    """The P2WPKH redeemScript of a P2SH-P2WPKH coin, from the descriptor scantxoutset gives.

    The node's signrawtransactionwithkey refuses a P2SH prevout without it (-8 "Missing
    redeemScript/witnessScript"); it is checked against the coin's script before use.
    """
    match = _SH_WPKH_DESC.match(desc)
    if match is None:
        raise SweepError("no public key in the descriptor %r of a P2SH-P2WPKH coin" % desc)
    redeem = b"\x00\x14" + hash160(bytes.fromhex(match.group(1)))
    if bytes.fromhex(script_hex)[2:22] != hash160(redeem):
        raise SweepError("the descriptor %r does not match the coin's script" % desc)
    return redeem.hex()


def output_weight(script_len: int) -> int:
    """Weight of one output: value (8) + script length (1) + script."""
    return (8 + 1 + script_len) * 4


def _witness_output(script_hex: str) -> bool:
    script = bytes.fromhex(script_hex)
    return (
        4 <= len(script) <= 42
        and (script[0] == 0 or 0x51 <= script[0] <= 0x60)
        and (script[1] == len(script) - 2)
    )


def dust_limit_of(script_hex: str) -> int:
    """Dust threshold of an output paying to ``script_hex`` (Core's GetDustThreshold, 3 sat/vB)."""
    size = 8 + 1 + len(script_hex) // 2
    spend = 32 + 4 + 1 + (107 // 4) + 4 if _witness_output(script_hex) else 32 + 4 + 1 + 107 + 4
    return (size + spend) * DUST_RELAY_FEE_SAT_PER_KVB // 1000


@dataclass
class Coin:
    """One unspent output found for the keys."""

    txid: str
    vout: int
    script_hex: str
    sats: int
    height: int | None = None
    desc: str = ""

    @property
    def kind(self) -> str | None:
        return script_kind(self.script_hex)

    def describe(self, reason: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "txid": self.txid,
            "vout": self.vout,
            "amount_sat": self.sats,
            "type": self.kind or "unknown",
        }
        if self.height is not None:
            out["height"] = self.height
        if reason is not None:
            out["reason"] = reason
        return out


@dataclass
class SweepPlan:
    """What a sweep spends, skips and pays."""

    chain: str
    height: int
    found_sat: int
    candidates: list[Coin] = field(default_factory=list)  # spendable, before the fee check
    spend: list[Coin] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    vsize: int = 0
    fee_sat: int = 0
    amount_sat: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "height": self.height,
            "found_sat": self.found_sat,
            "inputs": [coin.describe() for coin in self.spend],
            "skipped": self.skipped,
            "vsize": self.vsize,
            "fee_sat": self.fee_sat,
            "amount_sat": self.amount_sat,
        }


class Sweeper:
    """Finds and sweeps the funds of WIF keys through one node (every RPC goes to ``client``)."""

    def __init__(self, client: ChainRpcClient, keys: list[str]) -> None:
        self.client = client
        self.keys = [key.strip() for key in keys]
        self.fee_rate = 0.0  # sat/vB, set before choose() and price()

    # --- keys never leave in a message ------------------------------------------------------

    def scrub(self, text: str) -> str:
        """Replace every key in ``text`` with its position, e.g. ``<key #2>``."""
        for index, key in enumerate(self.keys, 1):
            if key:
                text = text.replace(key, "<key #%d>" % index)
        return text

    def _call(self, method: str, params: Any = None, wallet: bool = False) -> Any:
        try:
            if wallet:
                return self.client.wallet_call(method, params)
            return self.client.call(method, params)
        except ChainRpcError as exc:
            raise SweepError(
                self.scrub("%s failed: %s" % (method, exc)),
                rpc_code=exc.code,
                http_status=exc.http_status,
            ) from None

    # --- the steps ---------------------------------------------------------------------------

    def check_keys(self, chain: str) -> None:
        """Refuse an invalid key or a key of another network than the node's, before any RPC."""
        if not self.keys:
            raise SweepError("no keys given")
        wanted = key_network_for_chain(chain)
        seen: set[str] = set()
        for index, key in enumerate(self.keys, 1):
            try:
                info = decode_wif(key)
            except ValueError as exc:
                raise SweepError("key #%d %s" % (index, exc)) from None
            if info.network != wanted:
                raise SweepError(
                    "key #%d is a %s key (WIF prefix 0x%02x) but the node runs the %s network:"
                    " a key of the wrong network is refused (AZCoin keys use Bitcoin's prefixes,"
                    " so only main versus test/signet/regtest can be told apart)"
                    % (
                        index,
                        "mainnet" if info.network == "main" else "testnet/signet/regtest",
                        WIF_PREFIX_MAIN if info.network == "main" else WIF_PREFIX_TEST,
                        chain,
                    )
                )
            if key in seen:
                raise SweepError("key #%d is given twice" % index)
            seen.add(key)

    def plan(self) -> SweepPlan:
        """Scan the UTXO set for the keys' coins; set aside those that cannot be spent now."""
        info = self._call("getblockchaininfo")
        chain = str(info["chain"])
        self.check_keys(chain)
        if info.get("initialblockdownload"):
            raise SweepError(
                "the node is still in its initial block download (height %s of %s): its UTXO set"
                " would miss funds; sweep once it is in sync" % (info["blocks"], info["headers"])
            )
        scan = self._call("scantxoutset", ["start", ["combo(%s)" % key for key in self.keys]])
        if not scan or not scan.get("success", False):
            raise SweepError("scantxoutset did not complete (aborted?)")
        height = int(scan["height"])
        coins = [
            Coin(
                str(item["txid"]),
                int(item["vout"]),
                str(item["scriptPubKey"]),
                amount_to_sats(item["amount"]),
                item.get("height"),
                str(item.get("desc", "")),
            )
            for item in scan["unspents"]
        ]
        plan = SweepPlan(chain, height, sum(coin.sats for coin in coins))
        for coin in coins:
            reason = self._unspendable(coin)
            if reason is not None:
                plan.skipped.append(coin.describe(reason))
            else:
                plan.candidates.append(coin)
        return plan

    def choose(self, plan: SweepPlan) -> None:
        """Spend the candidates worth more than their own share of the fee; skip the others."""
        for coin in plan.candidates:
            cost = math.ceil(_INPUT_WEIGHT[coin.kind or "p2pkh"] / 4 * self.fee_rate)
            if coin.sats <= cost:
                plan.skipped.append(
                    coin.describe(
                        "uneconomic: spending it costs %d sat at %s sat/vB, more than it holds"
                        % (cost, _rate(self.fee_rate))
                    )
                )
            else:
                plan.spend.append(coin)

    def _unspendable(self, coin: Coin) -> str | None:
        if coin.kind is None:
            return "not a script a single key can spend here"
        # gettxout sees the mempool: a coin an unconfirmed transaction already spends (an
        # earlier sweep, or someone else holding the key) answers null.
        out = self._call("gettxout", [coin.txid, coin.vout, True])
        if out is None:
            return "already spent by an unconfirmed transaction (an earlier sweep?)"
        if out.get("coinbase") and int(out.get("confirmations", 0)) < COINBASE_MATURITY:
            return "immature coinbase (%s of %d confirmations)" % (
                out.get("confirmations"),
                COINBASE_MATURITY,
            )
        return None

    def price(self, plan: SweepPlan, output_script_hex: str) -> None:
        """Set the plan's size, fee and amount, or refuse when the rest would be dust."""
        weight = _TX_OVERHEAD_WEIGHT + output_weight(len(output_script_hex) // 2)
        weight += sum(_INPUT_WEIGHT[coin.kind or "p2pkh"] for coin in plan.spend)
        plan.vsize = math.ceil(weight / 4)
        plan.fee_sat = math.ceil(plan.vsize * self.fee_rate)
        total = sum(coin.sats for coin in plan.spend)
        plan.amount_sat = total - plan.fee_sat
        dust = dust_limit_of(output_script_hex)
        if not plan.spend or plan.amount_sat <= 0:
            raise SweepError(
                "the fee exceeds the value: the keys hold %d sat in %d output(s), and spending"
                " %s at %s sat/vB would cost more than they hold; nothing was swept (lower"
                " fee_rate, or keep the keys)"
                % (
                    plan.found_sat,
                    len(plan.spend) + len(plan.skipped),
                    "them" if plan.spend else "each",
                    _rate(self.fee_rate),
                ),
                **plan.summary(),
            )
        if plan.amount_sat < dust:
            raise SweepError(
                "dust: the keys hold %d sat; at %s sat/vB the fee is %d sat, leaving %d sat,"
                " below the dust limit of %d sat for the wallet's address; nothing was swept"
                % (plan.found_sat, _rate(self.fee_rate), plan.fee_sat, plan.amount_sat, dust),
                **plan.summary(),
            )

    def sweep(self, plan: SweepPlan, label: str, address_type: str | None) -> dict[str, Any]:
        """Build, sign and broadcast the one sweep transaction; returns what happened."""
        params = [label] if address_type is None else [label, address_type]
        address = str(self._call("getnewaddress", params, wallet=True))
        script_hex = str(self._call("getaddressinfo", [address], wallet=True)["scriptPubKey"])
        self.price(plan, script_hex)
        inputs = [{"txid": coin.txid, "vout": coin.vout} for coin in plan.spend]
        unsigned = self._call(
            "createrawtransaction", [inputs, [{address: sats_to_amount(plan.amount_sat)}]]
        )
        prevtxs: list[dict[str, Any]] = []
        for coin in plan.spend:
            prevtx: dict[str, Any] = {
                "txid": coin.txid,
                "vout": coin.vout,
                "scriptPubKey": coin.script_hex,
                "amount": sats_to_amount(coin.sats),
            }
            if coin.kind == "p2sh-p2wpkh":
                prevtx["redeemScript"] = redeem_script_of(coin.desc, coin.script_hex)
            prevtxs.append(prevtx)
        signed = self._call("signrawtransactionwithkey", [unsigned, self.keys, prevtxs])
        if not signed.get("complete"):
            problems = "; ".join(
                "%s:%s %s" % (e.get("txid"), e.get("vout"), e.get("error"))
                for e in signed.get("errors", [])
            )
            raise SweepError(self.scrub("the node could not sign every input: " + problems))
        decoded = self._call("decoderawtransaction", [signed["hex"]])
        txid = str(self._call("sendrawtransaction", [signed["hex"]]))
        vsize = int(decoded.get("vsize", plan.vsize))
        result = plan.summary()
        result.update(
            {
                "txid": txid,
                "address": address,
                "vsize": vsize,
                "fee_rate_sat_vb": round(plan.fee_sat / vsize, 3),
            }
        )
        return result


def _rate(rate: float) -> str:
    return ("%.3f" % rate).rstrip("0").rstrip(".")


# What a check-mode plan assumes the wallet's fresh address to be: a 22-byte P2WPKH script.
ASSUMED_OUTPUT_SCRIPT_HEX = "0014" + "00" * 20


def estimated_fee_rate(client: ChainRpcClient, conf_target: int) -> float:
    """The node's fee estimate in sat/vB (estimatesmartfee answers BTC per kvB)."""
    try:
        estimate = client.call("estimatesmartfee", [conf_target])
    except ChainRpcError as exc:
        raise SweepError("estimatesmartfee failed: %s" % exc, rpc_code=exc.code) from None
    if "feerate" not in estimate:
        raise SweepError(
            "the node has no fee estimate yet (%s): give fee_rate"
            % ("; ".join(estimate.get("errors", [])) or "no data")
        )
    return amount_to_sats(estimate["feerate"]) / 1000


def run_sweep(
    client: ChainRpcClient,
    keys: list[str],
    fee_rate: float | None,
    label: str,
    address_type: str | None,
    check_mode: bool,
    conf_target: int = 6,
) -> dict[str, Any]:
    """The module's whole job: returns the module result (``changed`` included).

    Without ``fee_rate`` the node's estimate for ``conf_target`` blocks is used.
    """
    if fee_rate is not None and not fee_rate > 0:
        raise SweepError("fee_rate must be above 0 sat/vB")
    sweeper = Sweeper(client, keys)
    plan = sweeper.plan()
    if not plan.candidates:
        result = plan.summary()
        result.update(
            changed=False,
            msg="nothing to sweep: the keys hold no spendable coins"
            + (
                ""
                if not plan.skipped
                else " (%d output(s) skipped, see skipped)" % len(plan.skipped)
            ),
        )
        return result
    sweeper.fee_rate = estimated_fee_rate(client, conf_target) if fee_rate is None else fee_rate
    sweeper.choose(plan)
    # Priced first for a P2WPKH address: a refusal (fee above value, dust) costs no address,
    # and check mode needs no fresh address (getnewaddress changes the wallet).
    sweeper.price(plan, ASSUMED_OUTPUT_SCRIPT_HEX)
    if check_mode:
        result = plan.summary()
        result.update(
            changed=True,
            fee_rate_sat_vb=sweeper.fee_rate,
            msg="would sweep %d sat (fee %d sat) from %d output(s)"
            % (plan.amount_sat, plan.fee_sat, len(plan.spend)),
        )
        return result
    result = sweeper.sweep(plan, label, address_type)
    result.update(
        changed=True,
        msg="swept %d sat (fee %d sat) from %d output(s) in %s"
        % (result["amount_sat"], result["fee_sat"], len(plan.spend), result["txid"]),
    )
    return result
