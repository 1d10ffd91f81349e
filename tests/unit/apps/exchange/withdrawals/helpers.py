"""Shared set-up of the withdrawal unit tests: policies, funded members, fake chains."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.ledger import NODE_WALLET, SATS, Hold, Ledger, verify
from scnode_exchange.ledger.models import utcnow
from scnode_exchange.withdrawals.address import encode_segwit
from scnode_exchange.withdrawals.models import Withdrawal, WithdrawalEvent
from scnode_exchange.withdrawals.service import WithdrawalService
from scnode_exchange.withdrawals.settings import WithdrawalPolicy
from scnode_exchange.withdrawals.worker import ChainUnavailableError, SendRefusedError

POLICY = WithdrawalPolicy(
    asset=SATS,
    hrp="bcrt",
    min_amount=1_000,
    max_amount=1_000_000,
    daily_limit=1_500_000,
    approval_threshold=500_000,
    flat_fee=200,
    fee_rate_sat_vb=2,
    tx_vsize=141,
    confirmations=2,
)
FEE = 200 + 2 * 141


def address(seed: int = 1, hrp: str = "bcrt") -> str:
    """A valid P2WPKH address with a made-up program."""
    return encode_segwit(hrp, 0, bytes([seed % 256]) * 20)


@dataclass
class Clock:
    now: datetime = field(default_factory=utcnow)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_service(
    sessions: sessionmaker[Session], clock: Clock | None = None, **policy: object
) -> WithdrawalService:
    chain_policy = POLICY.model_copy(update=policy) if policy else POLICY
    return WithdrawalService(sessions, {"bitcoin": chain_policy}, clock=clock or utcnow)


def funded_member(sessions: sessionmaker[Session], handle: str, sats: int) -> int:
    """A member with ``sats`` deposited (node wallet → member)."""
    with sessions.begin() as session:
        ledger = Ledger(session)
        member = ledger.create_member(handle)
        if sats:
            ledger.transfer(
                "deposit",
                "test deposit",
                ledger.system_account(NODE_WALLET, SATS),
                ledger.member_account(member.id, SATS),
                sats,
            )
        return member.id


def balance(sessions: sessionmaker[Session], member_id: int) -> tuple[int, int]:
    with sessions() as session:
        return Ledger(session).balances(member_id)[SATS]


def system_balance(sessions: sessionmaker[Session], name: str) -> int:
    with sessions() as session:
        return Ledger(session).system_account(name, SATS).balance


def counts(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    """(withdrawals, events, holds) rows."""
    with sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Withdrawal)) or 0,
            session.scalar(select(func.count()).select_from(WithdrawalEvent)) or 0,
            session.scalar(select(func.count()).select_from(Hold)) or 0,
        )


def assert_audit_clean(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        report = verify(session)
    assert report.ok, report


class FakeChain:
    """A chain API stand-in with the real one's idempotency: one payment per key."""

    def __init__(self) -> None:
        self.payments: dict[str, tuple[str, int, str]] = {}  # key -> (address, amount, txid)
        self.calls: list[str] = []
        self.confirmed: dict[str, int] = {}
        self.refuse: set[str] = set()  # addresses the "wallet" refuses
        self.down = False
        self.lose_answer_once: set[str] = set()  # keys whose first answer is lost
        self.lookups = 0

    async def send(
        self, address: str, amount: int, idempotency_key: str, fee_rate_sat_vb: int | None
    ) -> str:
        self.calls.append(idempotency_key)
        if self.down:
            raise ChainUnavailableError("chain API down")
        if address in self.refuse:
            raise SendRefusedError("invalid address: refused by the wallet")
        if idempotency_key not in self.payments:
            txid = os.urandom(32).hex()
            self.payments[idempotency_key] = (address, amount, txid)
            self.confirmed[txid] = 0
        if idempotency_key in self.lose_answer_once:
            self.lose_answer_once.discard(idempotency_key)
            raise ChainUnavailableError("timed out (the wallet sent anyway)")
        return self.payments[idempotency_key][2]

    async def confirmations(self, txid: str) -> tuple[int, int | None]:
        self.lookups += 1
        if self.down:
            raise ChainUnavailableError("chain API down")
        return self.confirmed[txid], 150

    def mine(self, blocks: int = 1) -> None:
        for txid in self.confirmed:
            self.confirmed[txid] += blocks
