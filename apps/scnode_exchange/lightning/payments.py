"""Members paying BOLT11 invoices, on the ledger: reserve → send once → settle or refund.

Every method is one transaction that does all it says or nothing:

* ``request_payment`` checks the decoded invoice (network, expiry, amount), the member's
  limits and the idempotency key, then either
  - **internal**: the invoice is another member's LaaS deposit invoice (found by payment
    hash, the very bolt11 this exchange handed out, still unpaid): payer -amount, payee
    +amount, the invoice marked credited — one journal entry ``ln:invoice:<payment hash>``,
    the reference the deposit watcher would have used, so the invoice is credited once
    whichever way it is paid; the Lightning API is not called. A member's own invoice is
    refused.
  - **external**: the payment row (``reserved``) and the hold ``lnpay:<id>:hold`` of
    ``amount + max fee`` are written together; the worker sends it.
* the worker's steps: ``claim_for_sending`` commits ``sending`` with the Lightning API key
  ``<prefix>-<id>`` BEFORE the API is called; ``record_complete`` settles the hold (member
  -(amount + actual fee), ``node_wallet`` +the same; the unused fee reserve released);
  ``record_failure`` releases the hold. Each locks the row and checks the state it leaves, so
  a result is recorded once.

Amounts: the ledger counts whole sats; an invoice's msat amount and the routing fee are each
rounded up to whole sats for the member (the sub-sat rest stays with the node).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.ledger import (
    FEES,
    NODE_WALLET,
    Account,
    InsufficientFundsError,
    Ledger,
    Leg,
    Member,
    MemberFrozenError,
)
from scnode_exchange.ledger.models import utcnow
from scnode_exchange.ledger.service import SATS
from scnode_exchange.lightning.bolt11 import CURRENCY, DecodedInvoice
from scnode_exchange.lightning.models import LightningInvoice, LightningPayment
from scnode_exchange.lightning.service import reference as invoice_reference
from scnode_exchange.refusals import DAY, IDEMPOTENCY_KEY_CHARS, RefusalError

KEY_CHARS = IDEMPOTENCY_KEY_CHARS
LIVE = ("reserved", "sending", "complete")


class LightningPaymentError(RefusalError):
    """A refusal; ``status`` is the HTTP status the API answers with, ``code`` its reason."""


class PaymentRefusedError(LightningPaymentError):
    """The request breaks a rule (invoice, limit, funds, freeze); nothing written."""

    status = 422


class PaymentConflictError(LightningPaymentError):
    """The key names another payment, or the invoice is already being paid."""

    status = 409


class PaymentNotFoundError(LightningPaymentError):
    """No such payment (or another member's: it looks the same)."""

    status = 404
    code = "not_found"


@dataclass(frozen=True, slots=True)
class PaymentPolicy:
    """Per-member limits (sats, fees not counted) and the routing fee reserved up front."""

    min_sats: int = 1
    max_sats: int = 1_000_000
    daily_limit_sats: int | None = 5_000_000
    fee_floor_sats: int = 10
    fee_ppm: int = 5_000

    def max_fee(self, amount_sats: int) -> int:
        """The routing fee reserved for a payment: max(floor, amount x ppm), rounded up."""
        return max(self.fee_floor_sats, -(-amount_sats * self.fee_ppm // 1_000_000))

    def to_json(self) -> dict[str, Any]:
        return {
            "min_sats": self.min_sats,
            "max_sats": self.max_sats,
            "daily_limit_sats": self.daily_limit_sats,
            "fee_floor_sats": self.fee_floor_sats,
            "fee_ppm": self.fee_ppm,
        }


@dataclass(frozen=True, slots=True)
class PaymentInfo:
    """A payment as the API and the worker see it (detached from any session)."""

    id: int
    member_id: int
    idempotency_key: str
    kind: str
    state: str
    bolt11: str
    payment_hash: str
    destination: str
    description: str
    amount_msat: int
    amount_sats: int
    max_fee_sats: int
    fee_sats: int | None
    fee_msat: int | None
    send_key: str | None
    api_state: str | None
    preimage: str | None
    payee_member_id: int | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    replayed: bool = False

    @classmethod
    def of(cls, row: LightningPayment) -> PaymentInfo:
        return cls(
            id=row.id,
            member_id=row.member_id,
            idempotency_key=row.idempotency_key,
            kind=row.kind,
            state=row.state,
            bolt11=row.bolt11,
            payment_hash=row.payment_hash,
            destination=row.destination,
            description=row.description,
            amount_msat=row.amount_msat,
            amount_sats=row.amount_sats,
            max_fee_sats=row.max_fee_sats,
            fee_sats=row.fee_sats,
            fee_msat=row.fee_msat,
            send_key=row.send_key,
            api_state=row.api_state,
            preimage=row.preimage,
            payee_member_id=row.payee_member_id,
            failure_reason=row.failure_reason,
            created_at=row.created_at,
            updated_at=row.updated_at,
            completed_at=row.completed_at,
        )

    def to_json(self) -> dict[str, Any]:
        """The member API's view (amounts in sats; the invoice's own amount in msat)."""
        if self.state == "complete":
            total = self.amount_sats + (self.fee_sats or 0)
        elif self.state == "failed":
            total = 0
        else:
            total = self.amount_sats + self.max_fee_sats  # reserved until the outcome
        return {
            "id": self.id,
            "idempotency_key": self.idempotency_key,
            "kind": self.kind,
            "state": self.state,
            "bolt11": self.bolt11,
            "payment_hash": self.payment_hash,
            "destination": self.destination,
            "description": self.description,
            "amount_msat": self.amount_msat,
            "amount_sats": self.amount_sats,
            "max_fee_sats": self.max_fee_sats,
            "fee_sats": self.fee_sats,
            "total_sats": total,
            "preimage": self.preimage,
            "failure_reason": self.failure_reason,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
        }


def hold_reference(payment_id: int) -> str:
    return f"lnpay:{payment_id}:hold"


def settle_reference(payment_id: int) -> str:
    return f"lnpay:{payment_id}:settle"


def sats_up(msat: int) -> int:
    """msat rounded up to whole sats."""
    return -(-msat // 1000)


class LightningPaymentService:
    """The payment operations; each method is one transaction on ``sessions``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        policy: PaymentPolicy | None = None,
        *,
        key_prefix: str = "lnpay",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.policy = policy or PaymentPolicy()
        self.key_prefix = key_prefix
        self.clock = clock

    def send_key(self, payment_id: int) -> str:
        """The Lightning API idempotency key of a payment (at least 8 characters)."""
        return f"{self.key_prefix}-{payment_id:06d}"

    # --- member operations ------------------------------------------------------------------
    def check_invoice(self, invoice: DecodedInvoice, network: str) -> int:
        """Refuse what cannot be paid; the amount in sats (msat rounded up) otherwise."""
        expected = CURRENCY.get(network)
        if expected is not None and invoice.currency != expected:
            raise PaymentRefusedError(
                f"the invoice is for {invoice.currency!r}, this node is on {network} "
                f"({expected!r})",
                "wrong_network",
            )
        if invoice.amount_msat is None:
            raise PaymentRefusedError(
                "invoices without an amount (zero-amount) cannot be paid here: ask the payee "
                "for an invoice with the amount",
                "zero_amount",
            )
        if invoice.expired(self.clock().timestamp()):
            raise PaymentRefusedError("the invoice has expired", "expired")
        amount = sats_up(invoice.amount_msat)
        if amount < self.policy.min_sats:
            raise PaymentRefusedError(
                f"amount {amount} sats is below the minimum {self.policy.min_sats}",
                "below_minimum",
            )
        if amount > self.policy.max_sats:
            raise PaymentRefusedError(
                f"amount {amount} sats is above the per-payment limit {self.policy.max_sats}",
                "above_maximum",
            )
        return amount

    def request_payment(
        self, member_id: int, key: str, invoice: DecodedInvoice, network: str
    ) -> PaymentInfo:
        """Reserve (external) or settle (internal) a member's payment of ``invoice``; the same
        key with the same invoice returns the first payment (``replayed``)."""
        if not 8 <= len(key) <= 128 or not set(key) <= KEY_CHARS:
            raise PaymentRefusedError(
                "idempotency_key must be 8-128 of letters, digits and _.:-", "bad_idempotency_key"
            )
        try:
            with self.sessions.begin() as session:
                existing = self._by_key(session, member_id, key)
                if existing is not None:  # a replay is answered even once the invoice expired
                    return self._replay(existing, invoice)
                amount = self.check_invoice(invoice, network)
                return self._request(session, member_id, key, invoice, amount)
        except IntegrityError:
            # a concurrent request with the same key won the insert: answer as a replay
            with self.sessions.begin() as session:
                existing = self._by_key(session, member_id, key)
                if existing is None:
                    raise
                return self._replay(existing, invoice)

    def _request(
        self, session: Session, member_id: int, key: str, invoice: DecodedInvoice, amount: int
    ) -> PaymentInfo:
        # the member's SATS account first (the ledger's lock order: accounts, then the rest)
        # serializes one member's requests on PostgreSQL; SQLite's BEGIN IMMEDIATE does anyway
        account = session.scalar(
            select(Account)
            .where(Account.member_id == member_id, Account.asset == SATS)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        member = session.get(Member, member_id, populate_existing=True)
        if account is None or member is None:
            raise PaymentNotFoundError(f"no member {member_id}", "unknown_member")
        existing = self._by_key(session, member_id, key)
        if existing is not None:
            return self._replay(existing, invoice)
        if member.frozen:
            raise PaymentRefusedError("your account is frozen; ask the owner", "member_frozen")
        now = self.clock()
        if self.policy.daily_limit_sats is not None:
            used = int(
                session.scalar(
                    select(func.coalesce(func.sum(LightningPayment.amount_sats), 0)).where(
                        LightningPayment.member_id == member_id,
                        LightningPayment.created_at > now - DAY,
                        LightningPayment.state != "failed",
                    )
                )
                or 0
            )
            if used + amount > self.policy.daily_limit_sats:
                raise PaymentRefusedError(
                    f"the 24-hour limit is {self.policy.daily_limit_sats} sats; {used} already "
                    "used",
                    "daily_limit",
                )
        live = session.scalar(
            select(LightningPayment.id).where(
                LightningPayment.payment_hash == invoice.payment_hash,
                LightningPayment.state.in_(LIVE),
            )
        )
        if live is not None:
            raise PaymentConflictError(
                "this invoice is already paid or being paid", "invoice_already_paid"
            )
        target = session.scalar(
            select(LightningInvoice)
            .where(LightningInvoice.payment_hash == invoice.payment_hash)
            .with_for_update()
        )
        row = LightningPayment(
            member_id=member_id,
            idempotency_key=key,
            kind="internal" if target is not None else "external",
            state="reserved",
            bolt11=invoice.bolt11,
            payment_hash=invoice.payment_hash,
            destination=invoice.payee,
            description=invoice.description[:1000],
            amount_msat=int(invoice.amount_msat or 0),
            amount_sats=amount,
            max_fee_sats=0 if target is not None else self.policy.max_fee(amount),
            created_at=now,
            updated_at=now,
        )
        if target is not None:
            return self._internal(session, row, target, invoice)
        session.add(row)
        session.flush()
        try:
            hold = Ledger(session).reserve(
                account,
                row.amount_sats + row.max_fee_sats,
                f"Lightning payment {row.id}: {amount} sats + fee up to {row.max_fee_sats}",
                reference=hold_reference(row.id),
            )
        except InsufficientFundsError:
            raise PaymentRefusedError(
                f"insufficient funds: {row.amount_sats + row.max_fee_sats} sats needed (amount "
                f"{amount} + routing fee reserve {row.max_fee_sats})",
                "insufficient_funds",
            ) from None
        except MemberFrozenError:
            raise PaymentRefusedError(
                "your account is frozen; ask the owner", "member_frozen"
            ) from None
        row.hold_id = hold.id
        session.flush()
        return PaymentInfo.of(row)

    def _internal(
        self,
        session: Session,
        row: LightningPayment,
        target: LightningInvoice,
        invoice: DecodedInvoice,
    ) -> PaymentInfo:
        """Settle a payment of another member's deposit invoice inside the ledger."""
        if target.member_id == row.member_id:
            raise PaymentRefusedError("you cannot pay your own invoice", "own_invoice")
        if target.bolt11.lower() != invoice.bolt11:
            raise PaymentRefusedError(
                "the invoice does not match the one this node issued for its payment hash",
                "invoice_mismatch",
            )
        if target.state != "unpaid":
            raise PaymentConflictError(
                f"this invoice is {target.state} already", "invoice_already_paid"
            )
        if row.amount_msat != target.amount_sats * 1000:
            raise PaymentRefusedError("the invoice's amount does not match", "invoice_mismatch")
        ledger = Ledger(session)
        try:
            entry = ledger.post(
                "lightning_internal",
                f"Lightning payment to member {target.member_id}, invoice {target.payment_hash}",
                [
                    Leg(ledger.member_account(row.member_id, SATS).id, -row.amount_sats),
                    Leg(ledger.member_account(target.member_id, SATS).id, row.amount_sats),
                ],
                reference=invoice_reference(target.payment_hash),
                actor=f"member:{row.member_id}",
            )
        except InsufficientFundsError:
            raise PaymentRefusedError(
                f"insufficient funds: {row.amount_sats} sats needed", "insufficient_funds"
            ) from None
        except MemberFrozenError:
            raise PaymentRefusedError(
                "your account is frozen; ask the owner", "member_frozen"
            ) from None
        now = self.clock()
        target.state = "credited"
        target.amount_received_msat = row.amount_msat
        target.credited_sats = row.amount_sats
        target.credit_entry_id = entry.id
        target.credited_at = now
        row.state = "complete"
        row.fee_sats = 0
        row.fee_msat = 0
        row.payee_member_id = target.member_id
        row.invoice_id = target.id
        row.entry_id = entry.id
        row.completed_at = now
        session.add(row)
        session.flush()
        return PaymentInfo.of(row)

    @staticmethod
    def _by_key(session: Session, member_id: int, key: str) -> LightningPayment | None:
        return session.scalar(
            select(LightningPayment).where(
                LightningPayment.member_id == member_id, LightningPayment.idempotency_key == key
            )
        )

    @staticmethod
    def _replay(existing: LightningPayment, invoice: DecodedInvoice) -> PaymentInfo:
        if existing.bolt11 != invoice.bolt11:
            raise PaymentConflictError(
                f"idempotency key {existing.idempotency_key!r} already names payment "
                f"{existing.id} of another invoice",
                "idempotency_key_reused",
            )
        return replace(PaymentInfo.of(existing), replayed=True)

    # --- reading ----------------------------------------------------------------------------
    def get(self, payment_id: int, member_id: int | None = None) -> PaymentInfo:
        with self.sessions() as session:
            row = session.get(LightningPayment, payment_id)
            if row is None or (member_id is not None and row.member_id != member_id):
                raise PaymentNotFoundError(f"no payment {payment_id}")
            return PaymentInfo.of(row)

    def list_payments(
        self, *, member_id: int | None = None, before_id: int | None = None, limit: int = 50
    ) -> list[PaymentInfo]:
        """Newest first; page with ``before_id`` = the last id of the previous page."""
        query = select(LightningPayment).order_by(LightningPayment.id.desc()).limit(limit)
        if member_id is not None:
            query = query.where(LightningPayment.member_id == member_id)
        if before_id is not None:
            query = query.where(LightningPayment.id < before_id)
        with self.sessions() as session:
            return [PaymentInfo.of(r) for r in session.scalars(query)]

    def used_today(self, member_id: int) -> int:
        """Sats of the member's payments in the last 24 hours that count against the limit."""
        with self.sessions() as session:
            return int(
                session.scalar(
                    select(func.coalesce(func.sum(LightningPayment.amount_sats), 0)).where(
                        LightningPayment.member_id == member_id,
                        LightningPayment.created_at > self.clock() - DAY,
                        LightningPayment.state != "failed",
                    )
                )
                or 0
            )

    def ids_in(self, state: str, limit: int = 100) -> list[int]:
        """Ids of external payments in ``state``, oldest first."""
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(LightningPayment.id)
                    .where(LightningPayment.state == state, LightningPayment.kind == "external")
                    .order_by(LightningPayment.id)
                    .limit(limit)
                )
            )

    # --- the worker's steps -----------------------------------------------------------------
    def claim_for_sending(self, payment_id: int) -> PaymentInfo | None:
        """``reserved`` → ``sending`` with the fixed key, committed BEFORE any API call. None
        when it is not reserved any more (another worker took it)."""
        with self.sessions.begin() as session:
            row = self._locked(session, payment_id)
            if row.state != "reserved":
                return None
            row.send_key = self.send_key(row.id)
            row.state = "sending"
            row.updated_at = self.clock()
            return PaymentInfo.of(row)

    def record_api_state(self, payment_id: int, api_state: str) -> None:
        """Remember what the Lightning API last said of a payment still in flight."""
        with self.sessions.begin() as session:
            row = self._locked(session, payment_id)
            if row.state == "sending" and row.api_state != api_state:
                row.api_state = api_state
                row.updated_at = self.clock()

    def record_complete(self, payment_id: int, fee_msat: int, preimage: str | None) -> PaymentInfo:
        """The Lightning API paid it: settle the hold (member -(amount + fee), node_wallet
        +the same), release the unused fee reserve. Idempotent."""
        with self.sessions.begin() as session:
            row = self._locked(session, payment_id)
            if row.state == "complete":
                return PaymentInfo.of(row)
            if row.state != "sending":
                raise PaymentConflictError(f"payment {row.id} is {row.state}, not sending")
            assert row.hold_id is not None
            actual = sats_up(max(fee_msat, 0))
            charged = min(actual, row.max_fee_sats)  # the reserve is the most a member pays
            ledger = Ledger(session)
            member_account = ledger.member_account(row.member_id, SATS)
            legs = [
                Leg(member_account.id, -(row.amount_sats + charged), row.hold_id),
                Leg(ledger.system_account(NODE_WALLET, SATS).id, row.amount_sats + actual),
            ]
            if actual > charged:  # lightningd paid more than the limit: the node bears it
                legs.append(Leg(ledger.system_account(FEES, SATS).id, -(actual - charged)))
            entry = ledger.post(
                "lightning_payment",
                f"Lightning payment {row.id}: {row.amount_sats} sats + fee {charged} "
                f"(invoice {row.payment_hash})",
                legs,
                reference=settle_reference(row.id),
                actor="worker",
            )
            ledger.release(row.hold_id)  # the unused part of the fee reserve
            now = self.clock()
            row.state = "complete"
            row.api_state = "complete"
            row.fee_msat = fee_msat
            row.fee_sats = charged
            row.preimage = preimage
            row.entry_id = entry.id
            row.completed_at = now
            row.updated_at = now
            return PaymentInfo.of(row)

    def record_failure(self, payment_id: int, reason: str) -> PaymentInfo:
        """The Lightning API says it failed for good (or refused it): hold released."""
        with self.sessions.begin() as session:
            row = self._locked(session, payment_id)
            if row.state == "failed":
                return PaymentInfo.of(row)
            if row.state not in ("reserved", "sending"):
                raise PaymentConflictError(f"payment {row.id} is {row.state}, not in flight")
            if row.hold_id is not None:
                Ledger(session).release(row.hold_id)
            row.state = "failed"
            row.failure_reason = reason[:1000]
            row.updated_at = self.clock()
            return PaymentInfo.of(row)

    def _locked(self, session: Session, payment_id: int) -> LightningPayment:
        row = session.get(
            LightningPayment, payment_id, with_for_update=True, populate_existing=True
        )
        if row is None:
            raise PaymentNotFoundError(f"no payment {payment_id}")
        return row
