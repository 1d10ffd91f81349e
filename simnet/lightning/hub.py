"""The simulated SC Cluster Lightning hub's "outside world".

A hub is an ordinary stand-in node started with `simnet-role=hub`. Behind it sits one
simulated outside node (its own key, derived from the hub's hsm_secret) standing for the rest
of the Lightning network: it issues invoices the node can pay through the hub, and pays the
node's invoices through the hub. The hub records both as forwards (listforwards, forward_event),
so the node and the hub agree on their channel balance after every payment.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import TYPE_CHECKING, Any

from simnet.lightning import bolt11, wallet
from simnet.lightning.node import WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS, RpcError, fee_for

if TYPE_CHECKING:
    from simnet.lightning.node import Node

OUTSIDE_SCID = "1x1x1"  # the hub's virtual channel to the outside world


class OutsideWorld:
    """Invoices issued and payments made by the network behind the hub."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.key = wallet.derive_key(node.hsm_secret, "outside")
        self.node_id = bytes(self.key.pub).hex()
        self.invoices: dict[str, dict[str, Any]] = {
            i["payment_hash"]: i for i in node.store.all("outside_invoice")
        }

    def node_ids(self) -> list[str]:
        """Nodes reachable through the hub (told to peers in the hello message)."""
        return [self.node_id]

    def owns(self, node_id: str) -> bool:
        """Is this node id the outside world's?"""
        return node_id == self.node_id

    def make_invoice(
        self, amount_msat: int | None, description: str, expiry: int
    ) -> dict[str, Any]:
        """An invoice of the outside world, payable by the node through the hub."""
        preimage = os.urandom(32)
        inv = bolt11.Invoice(
            currency=self.node.currency,
            created_at=int(time.time()),
            payment_hash=hashlib.sha256(preimage).digest(),
            payment_secret=os.urandom(32),
            amount_msat=amount_msat,
            description=description,
            expiry=expiry,
            min_final_cltv_expiry=10 if self.node.network == "regtest" else 18,
        )
        text = bolt11.encode(inv, self.key)
        record: dict[str, Any] = {
            "bolt11": text,
            "payment_hash": inv.payment_hash.hex(),
            "preimage": preimage.hex(),
            "payment_secret": (inv.payment_secret or b"").hex(),
            "amount_msat": amount_msat,
            "description": description,
            "status": "unpaid",
            "created_at": inv.created_at,
            "expires_at": inv.created_at + expiry,
        }
        self.invoices[record["payment_hash"]] = record
        self.node.store.put("outside_invoice", record["payment_hash"], record)
        return record

    async def settle_forward(
        self, node: Node, ch_in: dict[str, Any], msg: dict[str, Any], in_msat: int, out_msat: int
    ) -> dict[str, Any]:
        """An HTLC from a channel peer to the outside world: settle it if the invoice matches."""
        fwd = node._record_forward(ch_in, OUTSIDE_SCID, in_msat, out_msat, str(msg["payment_hash"]))
        record = self.invoices.get(str(msg["payment_hash"]))
        preimage = msg.get("keysend_preimage")
        # keysend to the outside world: the preimage travels with the payment
        if (
            record is None
            and preimage
            and hashlib.sha256(bytes.fromhex(str(preimage))).hexdigest() == msg["payment_hash"]
        ):
            now = int(time.time())
            record = {
                "payment_hash": msg["payment_hash"],
                "preimage": preimage,
                "payment_secret": None,
                "amount_msat": None,
                "status": "unpaid",
                "description": "keysend",
                "created_at": now,
                "expires_at": now + 60,
                "bolt11": None,
            }
            self.invoices[record["payment_hash"]] = record
        if (
            record is None
            or record["status"] != "unpaid"
            or record["payment_secret"] != msg.get("payment_secret")
            or (record["amount_msat"] is not None and out_msat < record["amount_msat"])
            or record["expires_at"] < time.time()
        ):
            node._resolve_forward(fwd, "failed", None)
            return node._fail(WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS, self.node_id)
        with node.store.txn():
            record["status"] = "paid"
            record["amount_received_msat"] = out_msat
            record["paid_at"] = int(time.time())
            node.store.put("outside_invoice", record["payment_hash"], record)
            node._move(ch_in, in_msat, "in")
            node._resolve_forward(fwd, "settled", record["preimage"])
        return {"fulfill": record["preimage"]}

    async def pay(self, bolt11_text: str, amount_msat: int | None) -> dict[str, Any]:
        """The outside world pays an invoice of a node connected to the hub."""
        node = self.node
        try:
            inv = bolt11.decode(bolt11_text)
        except (bolt11.Bolt11Error, ValueError) as exc:
            raise RpcError(-32602, f"Invalid bolt11: {exc}") from exc
        amount = inv.amount_msat if inv.amount_msat is not None else amount_msat
        if amount is None:
            raise RpcError(-32602, "amount_msat required for an amountless invoice")
        payee = inv.payee.hex()
        ch = node._channel_with(payee)
        link = node.peers.get(payee)
        if ch is None or link is None:
            raise RpcError(205, f"hub has no active channel with {payee}")
        if node.spendable(ch) < amount:
            raise RpcError(205, f"hub channel to {payee} can send only {node.spendable(ch)}msat")
        in_msat = amount + fee_for(amount)
        fwd = node._record_forward(
            {"short_channel_id": OUTSIDE_SCID, "in_payments_offered": 0},
            ch.get("short_channel_id", ""),
            in_msat,
            amount,
            inv.payment_hash.hex(),
        )
        reply = await node._send_htlc(
            ch,
            amount,
            amount,
            payee,
            inv.payment_hash.hex(),
            inv.payment_secret.hex() if inv.payment_secret else None,
            None,
        )
        if "fulfill" in reply:
            node._resolve_forward(fwd, "settled", str(reply["fulfill"]))
            return {
                "status": "complete",
                "payment_hash": inv.payment_hash.hex(),
                "payment_preimage": reply["fulfill"],
                "amount_msat": amount,
            }
        node._resolve_forward(fwd, "failed", None)
        return {
            "status": "failed",
            "payment_hash": inv.payment_hash.hex(),
            "failcode": reply.get("fail"),
            "failcodename": reply.get("failcodename"),
        }
