"""BOLT11 invoices decoded in the exchange, before any money is reserved.

The decoder is Core Lightning's own Python package ``pyln-proto`` (``pyln.proto.invoice``,
maintained in the Core Lightning repository, already installed with ``pyln-client``): bech32
checksum, human-readable part (network prefix and amount), tagged fields and the signature
(the payee's key is recovered from it or checked against the ``n`` field). The Lightning API
decodes the invoice again with lightningd's ``decode`` before it pays, so a mistake here can
refuse a payment but never send one lightningd would not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

# lightningd's network name → the invoice prefix after "ln" (BOLT 11)
CURRENCY = {"bitcoin": "bc", "testnet": "tb", "testnet4": "tb", "signet": "tbs", "regtest": "bcrt"}
DEFAULT_EXPIRY = 3600  # BOLT 11: no `x` field means one hour


class InvoiceError(ValueError):
    """Not an invoice this node can pay; ``code`` is the API's machine-readable reason."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True, slots=True)
class DecodedInvoice:
    bolt11: str
    currency: str
    payment_hash: str
    amount_msat: int | None  # None: the invoice names no amount
    created_at: int
    expiry: int
    payee: str
    description: str

    @property
    def expires_at(self) -> int:
        return self.created_at + self.expiry

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at <= (time.time() if now is None else now)


def decode(bolt11: str) -> DecodedInvoice:
    """Decode and check a BOLT11 string (InvoiceError when it is not a valid invoice)."""
    from pyln.proto.invoice import Invoice  # imported here: coincurve loads on first use

    text = bolt11.strip()
    if text.lower().startswith("lightning:"):
        text = text[len("lightning:") :]
    text = text.lower()
    if not text.startswith("ln") or len(text) > 4096:
        raise InvoiceError("not a BOLT11 invoice (it must start with ln)", "invalid_invoice")
    try:
        invoice = Invoice.decode(text)
    except Exception as exc:  # pyln raises ValueError, bitstring and coincurve errors
        why = str(exc).split(" for ln", 1)[0][:120]  # without the echoed invoice
        raise InvoiceError(f"not a valid BOLT11 invoice: {why}", "invalid_invoice") from None
    if invoice.paymenthash is None or len(invoice.paymenthash) != 32:
        raise InvoiceError("the invoice has no payment hash", "invalid_invoice")
    amount_msat: int | None = None
    if invoice.amount is not None:
        msat = Decimal(invoice.amount) * 10**11
        if msat != msat.to_integral_value() or msat <= 0:
            raise InvoiceError("the invoice's amount is not a whole msat", "invalid_invoice")
        amount_msat = int(msat)
    tags = dict(invoice.tags)
    return DecodedInvoice(
        bolt11=text,
        currency=str(invoice.currency),
        payment_hash=invoice.paymenthash.hex(),
        amount_msat=amount_msat,
        created_at=int(invoice.date),
        expiry=int(tags.get("x", DEFAULT_EXPIRY)),
        payee=invoice.pubkey.format().hex() if invoice.pubkey is not None else "",
        description=str(tags.get("d", "")),
    )
