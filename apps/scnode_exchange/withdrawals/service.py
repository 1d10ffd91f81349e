"""Withdrawal requests and their state machine, on the ledger.

Every method runs in its own transaction and either does all it says or nothing:

* ``request_withdrawal`` checks chain, address, amount, limits, idempotency key, then inserts
  the request and reserves ``amount + fee`` (hold ``withdrawal:<id>:hold``) in ONE
  transaction. A refusal (bad address, limit, insufficient funds, frozen member) raises a
  ``WithdrawalRefusedError`` and writes nothing.
* ``cancel`` (member), ``approve``/``reject`` (owner), and the worker's steps
  ``claim_for_sending`` → ``record_broadcast`` | ``record_failure`` → ``record_confirmations``
  each lock the withdrawal row, check the transition is allowed, change the state, append a
  ``withdrawal_events`` row and move the money (settle or release the hold) together.

Settlement at broadcast is one journal entry ``withdrawal:<id>:settle``: the hold pays
``amount`` to ``node_wallet`` and ``fee`` to ``fees``. Refunds release the hold (no entry: the
funds never left the member's account).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
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
from scnode_exchange.refusals import DAY, IDEMPOTENCY_KEY_CHARS, RefusalError
from scnode_exchange.withdrawals.address import AddressError, decode_segwit
from scnode_exchange.withdrawals.models import (
    APPROVED,
    AWAITING_APPROVAL,
    BROADCAST,
    CANCELLABLE,
    CANCELLED,
    CONFIRMED,
    FAILED,
    READY_TO_SEND,
    REFUNDED,
    REJECTED,
    REQUESTED,
    RESERVED,
    SENDING,
    TRANSITIONS,
    Withdrawal,
    WithdrawalEvent,
)
from scnode_exchange.withdrawals.settings import WithdrawalPolicy


class WithdrawalError(RefusalError):
    """Base of the withdrawal refusals; ``status`` is the HTTP status the API answers with."""


class WithdrawalRefusedError(WithdrawalError):
    """The request breaks a rule (address, amount, limit, funds, freeze); nothing written."""

    status = 422


class IdempotencyKeyReusedError(WithdrawalError):
    """The member's idempotency key already names a different withdrawal."""

    status = 409
    code = "idempotency_key_reused"


class WithdrawalNotFoundError(WithdrawalError):
    """No such withdrawal (or not the caller's: looks the same)."""

    status = 404
    code = "not_found"


class InvalidTransitionError(WithdrawalError):
    """The withdrawal is in a state that does not allow this (e.g. cancel while sending)."""

    status = 409
    code = "invalid_state"


@dataclass(frozen=True, slots=True)
class WithdrawalInfo:
    """A withdrawal as the API and the worker see it (detached from any session)."""

    id: int
    member_id: int
    chain: str
    asset: str
    address: str
    amount: int
    fee: int
    idempotency_key: str
    state: str
    send_key: str | None
    fee_rate_sat_vb: int | None
    txid: str | None
    confirmations: int
    network_fee: int | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    replayed: bool = False  # True when a repeated request returned this existing withdrawal

    @property
    def total(self) -> int:
        return self.amount + self.fee

    @classmethod
    def of(cls, row: Withdrawal) -> WithdrawalInfo:
        return cls(
            id=row.id,
            member_id=row.member_id,
            chain=row.chain,
            asset=row.asset,
            address=row.address,
            amount=row.amount,
            fee=row.fee,
            idempotency_key=row.idempotency_key,
            state=row.state,
            send_key=row.send_key,
            fee_rate_sat_vb=row.fee_rate_sat_vb,
            txid=row.txid,
            confirmations=row.confirmations,
            network_fee=row.network_fee,
            failure_reason=row.failure_reason,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def to_json(self) -> dict[str, Any]:
        """The API's view (amounts as integers in base units)."""
        return {
            "id": self.id,
            "member_id": self.member_id,
            "chain": self.chain,
            "asset": self.asset,
            "address": self.address,
            "amount": self.amount,
            "fee": self.fee,
            "total": self.total,
            "idempotency_key": self.idempotency_key,
            "state": self.state,
            "refunded": self.state in REFUNDED,
            "txid": self.txid,
            "confirmations": self.confirmations,
            "network_fee": self.network_fee,
            "failure_reason": self.failure_reason,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class EventInfo:
    """One recorded state change."""

    id: int
    withdrawal_id: int
    from_state: str | None
    to_state: str
    actor: str
    detail: str | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "withdrawal_id": self.withdrawal_id,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "actor": self.actor,
            "detail": self.detail,
            "created_at": self.created_at.isoformat(),
        }


def send_key_of(withdrawal_id: int, prefix: str = "wd") -> str:
    """The chain API idempotency key of a withdrawal: ``wd-<id>``, the id zero-padded (the
    chain API wants at least 8 characters). A node whose exchange database is ever rebuilt
    from scratch sets another prefix, so new ids never meet the old keys the chain API keeps."""
    return f"{prefix}-{withdrawal_id:06d}"


def hold_reference(withdrawal_id: int) -> str:
    return f"withdrawal:{withdrawal_id}:hold"


class WithdrawalService:
    """The withdrawal operations; each method is one transaction on ``sessions``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        policies: Mapping[str, WithdrawalPolicy],
        *,
        clock: Callable[[], datetime] = utcnow,
        send_key_prefix: str = "wd",
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.:]{1,40}", send_key_prefix):
            raise ValueError("send_key_prefix must be 1-40 of letters, digits and _.:")
        self.send_key_prefix = send_key_prefix
        self.sessions = sessions
        self.policies = dict(policies)
        self.clock = clock

    # --- member operations ------------------------------------------------------------------

    def request_withdrawal(
        self, member_id: int, chain: str, address: str, amount: int, idempotency_key: str
    ) -> WithdrawalInfo:
        """Create a withdrawal and reserve ``amount + fee`` atomically (see the module doc).

        The same ``idempotency_key`` with the same chain, address and amount returns the
        first withdrawal; with anything else it is an IdempotencyKeyReusedError.
        """
        policy = self._check_request(chain, address, amount, idempotency_key)
        try:
            with self.sessions.begin() as session:
                return self._request(
                    session, policy, member_id, chain, address, amount, idempotency_key
                )
        except IntegrityError:
            # a concurrent request with the same key won the insert: answer as a replay
            with self.sessions.begin() as session:
                existing = self._by_key(session, member_id, idempotency_key)
                if existing is None:
                    raise
                return self._replay(existing, chain, address, amount)

    def _check_request(
        self, chain: str, address: str, amount: int, idempotency_key: str
    ) -> WithdrawalPolicy:
        policy = self.policies.get(chain)
        if policy is None:
            raise WithdrawalRefusedError(
                f"withdrawals on chain {chain!r} are not offered "
                f"(chains: {', '.join(sorted(self.policies)) or 'none'})",
                "unknown_chain",
            )
        if (
            not 1 <= len(idempotency_key) <= 128
            or not set(idempotency_key) <= IDEMPOTENCY_KEY_CHARS
        ):
            raise WithdrawalRefusedError(
                "idempotency key must be 1-128 of letters, digits and _.:-", "bad_idempotency_key"
            )
        if type(amount) is not int or amount <= 0:
            raise WithdrawalRefusedError("amount must be a positive integer", "bad_amount")
        try:
            decode_segwit(policy.hrp, address)
        except AddressError as exc:
            raise WithdrawalRefusedError(
                f"invalid {chain} address: {exc}", "invalid_address"
            ) from None
        if amount < policy.min_amount:
            raise WithdrawalRefusedError(
                f"amount {amount} is below the minimum {policy.min_amount}", "below_minimum"
            )
        if policy.max_amount is not None and amount > policy.max_amount:
            raise WithdrawalRefusedError(
                f"amount {amount} is above the per-withdrawal limit {policy.max_amount}",
                "above_maximum",
            )
        return policy

    def _request(
        self,
        session: Session,
        policy: WithdrawalPolicy,
        member_id: int,
        chain: str,
        address: str,
        amount: int,
        idempotency_key: str,
    ) -> WithdrawalInfo:
        # Locking the member's account of this asset first (the ledger's own lock order:
        # accounts, then holds) serializes one member's requests on this chain (idempotency
        # look-up, daily limit, insert, hold) on PostgreSQL; on SQLite BEGIN IMMEDIATE already
        # serializes every writer.
        account = session.scalar(
            select(Account)
            .where(Account.member_id == member_id, Account.asset == policy.asset)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        member = session.get(Member, member_id, populate_existing=True)
        if account is None or member is None:
            raise WithdrawalNotFoundError(f"no member {member_id}", "unknown_member")
        existing = self._by_key(session, member_id, idempotency_key)
        if existing is not None:
            return self._replay(existing, chain, address, amount)
        if member.frozen:
            raise WithdrawalRefusedError("your account is frozen; ask the owner", "member_frozen")
        now = self.clock()
        if policy.daily_limit is not None:
            used = session.scalar(
                select(func.coalesce(func.sum(Withdrawal.amount), 0)).where(
                    Withdrawal.member_id == member_id,
                    Withdrawal.chain == chain,
                    Withdrawal.created_at > now - DAY,
                    Withdrawal.state.not_in(REFUNDED),
                )
            )
            if int(used or 0) + amount > policy.daily_limit:
                raise WithdrawalRefusedError(
                    f"the 24-hour limit is {policy.daily_limit}; {int(used or 0)} already used",
                    "daily_limit",
                )
        fee = policy.fee
        row = Withdrawal(
            member_id=member_id,
            chain=chain,
            asset=policy.asset,
            address=address,
            amount=amount,
            fee=fee,
            idempotency_key=idempotency_key,
            state=REQUESTED,
            fee_rate_sat_vb=policy.fee_rate_sat_vb,
            confirmations=0,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        self._event(session, row, None, REQUESTED, f"member:{member_id}", None)
        ledger = Ledger(session)
        try:
            hold = ledger.reserve(
                account,
                row.total,
                f"withdrawal {row.id}: {amount} + fee {fee} to {address}",
                reference=hold_reference(row.id),
            )
        except InsufficientFundsError:
            raise WithdrawalRefusedError(
                f"insufficient funds: {row.total} {policy.asset} needed (amount {amount} + "
                f"fee {fee})",
                "insufficient_funds",
            ) from None
        except MemberFrozenError:
            raise WithdrawalRefusedError(
                "your account is frozen; ask the owner", "member_frozen"
            ) from None
        row.hold_id = hold.id
        self._transition(session, row, RESERVED, f"member:{member_id}", f"hold {hold.id}")
        if policy.approval_threshold is not None and amount > policy.approval_threshold:
            self._transition(
                session,
                row,
                AWAITING_APPROVAL,
                "system",
                f"amount above the approval threshold {policy.approval_threshold}",
            )
        session.flush()
        return WithdrawalInfo.of(row)

    @staticmethod
    def _by_key(session: Session, member_id: int, key: str) -> Withdrawal | None:
        return session.scalar(
            select(Withdrawal).where(
                Withdrawal.member_id == member_id, Withdrawal.idempotency_key == key
            )
        )

    @staticmethod
    def _replay(existing: Withdrawal, chain: str, address: str, amount: int) -> WithdrawalInfo:
        if (existing.chain, existing.address, existing.amount) != (chain, address, amount):
            raise IdempotencyKeyReusedError(
                f"idempotency key {existing.idempotency_key!r} already names withdrawal "
                f"{existing.id} with other details"
            )
        return replace(WithdrawalInfo.of(existing), replayed=True)

    def cancel(self, member_id: int, withdrawal_id: int) -> WithdrawalInfo:
        """The member takes back a withdrawal that is not being sent yet (hold released)."""
        with self.sessions.begin() as session:
            row = self._locked(session, withdrawal_id, member_id)
            if row.state not in CANCELLABLE:
                raise InvalidTransitionError(
                    f"withdrawal {row.id} is {row.state}; only one not yet being sent can be "
                    "cancelled"
                )
            self._refund(session, row, CANCELLED, f"member:{member_id}", "cancelled by member")
            return WithdrawalInfo.of(row)

    # --- owner operations -------------------------------------------------------------------

    def approve(self, withdrawal_id: int, actor: str) -> WithdrawalInfo:
        """Let a withdrawal above the threshold go out."""
        with self.sessions.begin() as session:
            row = self._locked(session, withdrawal_id)
            if row.state != AWAITING_APPROVAL:
                raise InvalidTransitionError(
                    f"withdrawal {row.id} is {row.state}, not awaiting approval"
                )
            self._transition(session, row, APPROVED, actor, "approved")
            return WithdrawalInfo.of(row)

    def reject(self, withdrawal_id: int, actor: str, reason: str) -> WithdrawalInfo:
        """Refuse a withdrawal not yet being sent; the hold goes back to the member."""
        if not reason.strip():
            raise WithdrawalRefusedError("a rejection needs a reason", "reason_required")
        with self.sessions.begin() as session:
            row = self._locked(session, withdrawal_id)
            if row.state not in CANCELLABLE:
                raise InvalidTransitionError(
                    f"withdrawal {row.id} is {row.state}; only one not yet being sent can be "
                    "rejected"
                )
            row.failure_reason = reason
            self._refund(session, row, REJECTED, actor, reason)
            return WithdrawalInfo.of(row)

    # --- reading ----------------------------------------------------------------------------

    def get(self, withdrawal_id: int, member_id: int | None = None) -> WithdrawalInfo:
        """One withdrawal; with ``member_id``, another member's looks exactly like a missing one."""
        with self.sessions() as session:
            row = session.get(Withdrawal, withdrawal_id)
            if row is None or (member_id is not None and row.member_id != member_id):
                raise WithdrawalNotFoundError(f"no withdrawal {withdrawal_id}")
            return WithdrawalInfo.of(row)

    def list_withdrawals(
        self,
        *,
        member_id: int | None = None,
        states: tuple[str, ...] | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[WithdrawalInfo]:
        """Newest first; page with ``before_id`` = the last id of the previous page."""
        query = select(Withdrawal).order_by(Withdrawal.id.desc()).limit(limit)
        if member_id is not None:
            query = query.where(Withdrawal.member_id == member_id)
        if states:
            query = query.where(Withdrawal.state.in_(states))
        if before_id is not None:
            query = query.where(Withdrawal.id < before_id)
        with self.sessions() as session:
            return [WithdrawalInfo.of(r) for r in session.scalars(query)]

    def events(self, withdrawal_id: int) -> list[EventInfo]:
        """Every state change of a withdrawal, oldest first."""
        with self.sessions() as session:
            rows = session.scalars(
                select(WithdrawalEvent)
                .where(WithdrawalEvent.withdrawal_id == withdrawal_id)
                .order_by(WithdrawalEvent.id)
            )
            return [
                EventInfo(
                    r.id, r.withdrawal_id, r.from_state, r.to_state, r.actor, r.detail, r.created_at
                )
                for r in rows
            ]

    # --- the worker's steps -----------------------------------------------------------------

    def ids_in(self, states: tuple[str, ...], limit: int = 1000) -> list[int]:
        """Ids of withdrawals in ``states``, oldest first (frozen members' ready ones left out:
        a freeze holds back withdrawals that are not being sent yet)."""
        query = select(Withdrawal.id).where(Withdrawal.state.in_(states))
        if set(states) & set(READY_TO_SEND):
            query = query.join(Member, Member.id == Withdrawal.member_id).where(
                Member.frozen.is_(False) | Withdrawal.state.not_in(READY_TO_SEND)
            )
        with self.sessions() as session:
            return list(session.scalars(query.order_by(Withdrawal.id).limit(limit)))

    def claim_for_sending(self, withdrawal_id: int) -> WithdrawalInfo | None:
        """Mark a ready withdrawal ``sending`` with its fixed key, BEFORE any send attempt.

        Returns None when it is no longer ready (cancelled, rejected, member frozen)."""
        with self.sessions.begin() as session:
            row = self._locked(session, withdrawal_id)
            if row.state not in READY_TO_SEND:
                return None
            member = session.get(Member, row.member_id, populate_existing=True)
            if member is None or member.frozen:
                return None
            row.send_key = send_key_of(row.id, self.send_key_prefix)
            self._transition(session, row, SENDING, "worker", f"key {row.send_key}")
            return WithdrawalInfo.of(row)

    def record_broadcast(self, withdrawal_id: int, txid: str) -> WithdrawalInfo:
        """The chain API sent it: store the txid and settle the hold (amount → node wallet,
        fee → fees) in the same transaction. Idempotent for the same txid."""
        with self.sessions.begin() as session:
            row = self._locked(session, withdrawal_id)
            if row.state in (BROADCAST, CONFIRMED) and row.txid == txid:
                return WithdrawalInfo.of(row)
            if row.state != SENDING:
                raise InvalidTransitionError(f"withdrawal {row.id} is {row.state}, not sending")
            assert row.hold_id is not None
            ledger = Ledger(session)
            member_account = ledger.member_account(row.member_id, row.asset)
            legs = [
                Leg(member_account.id, -row.total, row.hold_id),
                Leg(ledger.system_account(NODE_WALLET, row.asset).id, row.amount),
            ]
            if row.fee:
                legs.append(Leg(ledger.system_account(FEES, row.asset).id, row.fee))
            ledger.post(
                "withdrawal",
                f"withdrawal {row.id}: {row.amount} to {row.address} (tx {txid}), fee {row.fee}",
                legs,
                reference=f"withdrawal:{row.id}:settle",
                actor="worker",
            )
            row.txid = txid
            self._transition(session, row, BROADCAST, "worker", f"txid {txid}")
            return WithdrawalInfo.of(row)

    def record_failure(self, withdrawal_id: int, reason: str) -> WithdrawalInfo:
        """The chain API refused the send for good: ``failed`` and the hold released."""
        with self.sessions.begin() as session:
            row = self._locked(session, withdrawal_id)
            if row.state == FAILED:
                return WithdrawalInfo.of(row)
            if row.state != SENDING:
                raise InvalidTransitionError(f"withdrawal {row.id} is {row.state}, not sending")
            row.failure_reason = reason
            self._refund(session, row, FAILED, "worker", reason)
            return WithdrawalInfo.of(row)

    def record_confirmations(
        self, withdrawal_id: int, confirmations: int, network_fee: int | None
    ) -> WithdrawalInfo:
        """Follow a broadcast withdrawal; at the chain's confirmations it is ``confirmed`` and
        the network fee the wallet paid is booked from ``fees`` to ``node_wallet``."""
        with self.sessions.begin() as session:
            row = self._locked(session, withdrawal_id)
            if row.state != BROADCAST:
                return WithdrawalInfo.of(row)
            row.confirmations = confirmations
            policy = self.policies.get(row.chain)
            needed = policy.confirmations if policy is not None else 1
            if confirmations >= needed:
                if network_fee:
                    ledger = Ledger(session)
                    ledger.transfer(
                        "network_fee",
                        f"network fee of withdrawal {row.id} (tx {row.txid})",
                        ledger.system_account(FEES, row.asset),
                        ledger.system_account(NODE_WALLET, row.asset),
                        network_fee,
                        reference=f"withdrawal:{row.id}:network_fee",
                        actor="worker",
                    )
                    row.network_fee = network_fee
                self._transition(
                    session, row, CONFIRMED, "worker", f"{confirmations} confirmations"
                )
            return WithdrawalInfo.of(row)

    # --- internals --------------------------------------------------------------------------

    def _locked(
        self, session: Session, withdrawal_id: int, member_id: int | None = None
    ) -> Withdrawal:
        row = session.get(Withdrawal, withdrawal_id, with_for_update=True, populate_existing=True)
        if row is None or (member_id is not None and row.member_id != member_id):
            raise WithdrawalNotFoundError(f"no withdrawal {withdrawal_id}")
        return row

    def _refund(self, session: Session, row: Withdrawal, state: str, actor: str, why: str) -> None:
        if row.hold_id is not None:
            Ledger(session).release(row.hold_id)
        self._transition(session, row, state, actor, why)

    def _transition(
        self, session: Session, row: Withdrawal, to: str, actor: str, detail: str | None
    ) -> None:
        if to not in TRANSITIONS[row.state]:
            raise InvalidTransitionError(f"withdrawal {row.id}: {row.state} → {to} not allowed")
        before = row.state
        row.state = to
        row.updated_at = self.clock()
        self._event(session, row, before, to, actor, detail)

    def _event(
        self,
        session: Session,
        row: Withdrawal,
        before: str | None,
        to: str,
        actor: str,
        detail: str | None,
    ) -> None:
        session.add(
            WithdrawalEvent(
                withdrawal_id=row.id,
                from_state=before,
                to_state=to,
                actor=actor,
                detail=detail,
                created_at=self.clock(),
            )
        )
