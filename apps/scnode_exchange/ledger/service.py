"""Operations on the ledger. Each runs inside the caller's transaction (``with session.begin()``).

Concurrency: every operation first locks the account rows it will change, in ascending id
order (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the whole write transaction holds the
database lock from ``BEGIN IMMEDIATE``), then checks and applies. The check constraints on
``accounts`` are a second line: a member balance below zero cannot even be committed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from scnode_exchange.ledger.errors import (
    HoldClosedError,
    IdempotencyConflictError,
    InsufficientFundsError,
    InvalidAmountError,
    MemberFrozenError,
    UnbalancedEntryError,
    UnknownAccountError,
)
from scnode_exchange.ledger.models import (
    Account,
    Asset,
    Hold,
    JournalEntry,
    Member,
    Posting,
    utcnow,
)

SATS = "SATS"
AZC = "AZC"

# System accounts, one per asset. The node wallet carries (negated) what the node holds for
# members; fees, mining pool, LaaS, suspense and the owner's accounts are the exchange's own.
NODE_WALLET = "node_wallet"
FEES = "fees"
MINING_POOL = "mining_pool"
LAAS = "laas"
SUSPENSE = "suspense"
OWNER_EQUITY = "owner_equity"
OWNER_RECEIVABLE = "owner_receivable"
SYSTEM_ACCOUNTS = (NODE_WALLET, FEES, MINING_POOL, LAAS, SUSPENSE, OWNER_EQUITY, OWNER_RECEIVABLE)


@dataclass(frozen=True, slots=True)
class AssetSpec:
    """An asset to create: code, display name, decimal places of its base unit, unit name."""

    code: str
    name: str
    decimals: int
    unit: str


BUILTIN_ASSETS = (
    AssetSpec(SATS, "Bitcoin (on-chain and Lightning)", 0, "sat"),
    AssetSpec(AZC, "AZCoin", 8, "azsat"),
)


@dataclass(frozen=True, slots=True)
class Leg:
    """One posting to make: ``amount`` (signed) on ``account_id``.

    A negative leg with ``hold_id`` is paid out of that hold (settle-from-hold): the hold and
    the account's ``reserved`` shrink by the amount, so it needs no available balance.
    """

    account_id: int
    amount: int
    hold_id: int | None = None


# the largest amount a BIGINT column (balances, postings, holds) holds: a posting or a balance
# beyond it is refused here, not left to the database (SQLite's OverflowError was a 500)
BALANCE_MAX = 2**63 - 1


def check_balances_fit(new_balances: Mapping[int, int]) -> None:
    """Refuse an entry that would take an account's balance beyond what the database holds."""
    for account_id, balance in new_balances.items():
        if not -BALANCE_MAX <= balance <= BALANCE_MAX:
            raise InvalidAmountError(
                f"account {account_id} would hold {balance}, beyond the largest amount a "
                f"balance can hold ({BALANCE_MAX})"
            )


def _check_amount(amount: int) -> None:
    if type(amount) is not int or amount <= 0:
        raise InvalidAmountError(f"amount must be a positive integer, got {amount!r}")


class Ledger:
    """The ledger operations on one session; the caller owns the transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # --- set-up -----------------------------------------------------------------------------

    def ensure_assets(self, extra: Iterable[AssetSpec] = ()) -> None:
        """Create the built-in assets, ``extra`` ones (the microcurrency) and their system
        accounts; existing ones are left alone."""
        for spec in (*BUILTIN_ASSETS, *extra):
            if self.session.get(Asset, spec.code) is None:
                self.session.add(
                    Asset(code=spec.code, name=spec.name, decimals=spec.decimals, unit=spec.unit)
                )
                self.session.flush()
            for name in SYSTEM_ACCOUNTS:
                found = self.session.scalar(
                    select(Account.id).where(
                        Account.asset == spec.code, Account.system_name == name
                    )
                )
                if found is None:
                    self.session.add(Account(asset=spec.code, system_name=name))
        self.session.flush()

    def create_member(self, handle: str) -> Member:
        """A new member with a zero account in every asset."""
        member = Member(handle=handle, frozen=False)
        self.session.add(member)
        self.session.flush()
        for code in self.session.scalars(select(Asset.code).order_by(Asset.code)):
            self.session.add(Account(asset=code, member_id=member.id, balance=0, reserved=0))
        self.session.flush()
        return member

    # --- look-ups ---------------------------------------------------------------------------

    def member_account(self, member_id: int, asset: str) -> Account:
        """The member's account in ``asset``."""
        account = self.session.scalar(
            select(Account).where(Account.member_id == member_id, Account.asset == asset)
        )
        if account is None:
            raise UnknownAccountError(f"member {member_id} has no {asset} account")
        return account

    def system_account(self, name: str, asset: str) -> Account:
        """The system account ``name`` (one of SYSTEM_ACCOUNTS) in ``asset``."""
        account = self.session.scalar(
            select(Account).where(Account.system_name == name, Account.asset == asset)
        )
        if account is None:
            raise UnknownAccountError(f"no system account {name} in {asset}")
        return account

    def _lock(self, account_ids: Iterable[int]) -> dict[int, Account]:
        ids = sorted(set(account_ids))
        rows = self.session.scalars(
            select(Account)
            .where(Account.id.in_(ids))
            .order_by(Account.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).all()
        accounts = {row.id: row for row in rows}
        missing = set(ids) - accounts.keys()
        if missing:
            raise UnknownAccountError(f"no accounts {sorted(missing)}")
        return accounts

    def _members(self, accounts: Iterable[Account]) -> dict[int, Member]:
        ids = {a.member_id for a in accounts if a.member_id is not None}
        if not ids:
            return {}
        rows = self.session.scalars(
            select(Member).where(Member.id.in_(ids)).execution_options(populate_existing=True)
        )
        return {m.id: m for m in rows}

    # --- movements --------------------------------------------------------------------------

    def post(
        self,
        kind: str,
        reason: str,
        legs: Sequence[Leg],
        *,
        reference: str | None = None,
        actor: str = "system",
        allow_frozen: bool = False,
    ) -> JournalEntry:
        """Record one balanced journal entry and apply it to the running balances.

        Refuses (raising a LedgerError, nothing written) when a leg is zero or not an integer,
        an asset's legs do not sum to zero, a member debit exceeds the available balance (or
        the hold it names), or a frozen member would pay out without ``allow_frozen`` (owner
        actions). With a ``reference`` seen before, returns that entry if it is the same
        movement and raises IdempotencyConflictError otherwise.
        """
        if len(legs) < 2:
            raise UnbalancedEntryError("an entry needs at least two postings")
        for leg in legs:
            if type(leg.amount) is not int or leg.amount == 0:
                raise InvalidAmountError(f"posting amount must be a non-zero integer: {leg!r}")
            if not -BALANCE_MAX <= leg.amount <= BALANCE_MAX:
                raise InvalidAmountError(f"posting amount beyond {BALANCE_MAX}: {leg!r}")
            if leg.hold_id is not None and leg.amount > 0:
                raise InvalidAmountError("only a debit can be paid from a hold")
        if reference is not None:
            existing = self.session.scalar(
                select(JournalEntry).where(JournalEntry.reference == reference)
            )
            if existing is not None:
                same = existing.kind == kind and sorted(
                    (p.account_id, p.amount) for p in existing.postings
                ) == sorted((leg.account_id, leg.amount) for leg in legs)
                if not same:
                    raise IdempotencyConflictError(
                        f"reference {reference!r} names another movement"
                    )
                return existing

        accounts = self._lock(leg.account_id for leg in legs)
        per_asset: dict[str, int] = defaultdict(int)
        for leg in legs:
            per_asset[accounts[leg.account_id].asset] += leg.amount
        unbalanced = {asset: total for asset, total in per_asset.items() if total != 0}
        if unbalanced:
            raise UnbalancedEntryError(f"postings do not sum to zero per asset: {unbalanced}")

        holds = self._lock_holds(leg.hold_id for leg in legs if leg.hold_id is not None)
        from_hold: dict[int, int] = defaultdict(int)
        free_debit: dict[int, int] = defaultdict(int)
        net: dict[int, int] = defaultdict(int)
        for leg in legs:
            net[leg.account_id] += leg.amount
            if leg.hold_id is not None:
                hold = holds[leg.hold_id]
                if hold.account_id != leg.account_id:
                    raise HoldClosedError(f"hold {hold.id} is not on account {leg.account_id}")
                from_hold[leg.hold_id] += -leg.amount
            elif leg.amount < 0:
                free_debit[leg.account_id] += -leg.amount
        for hold_id, amount in from_hold.items():
            hold = holds[hold_id]
            if not hold.is_open or amount > hold.remaining:
                raise HoldClosedError(
                    f"hold {hold_id} cannot pay {amount} (remaining {hold.remaining})"
                )

        member_debits = [i for i in free_debit if accounts[i].member_id is not None]
        members = self._members(accounts[i] for i in member_debits) if member_debits else {}
        for account_id in member_debits:
            debit = free_debit[account_id]
            account = accounts[account_id]
            assert account.member_id is not None
            if members[account.member_id].frozen and not allow_frozen:
                raise MemberFrozenError(f"member {account.member_id} is frozen")
            # credits in the same entry do not count: a debit is covered by what was there
            if debit > account.available:
                raise InsufficientFundsError(
                    f"account {account_id} ({account.asset}) has {account.available} available, "
                    f"needs {debit}"
                )

        check_balances_fit({i: accounts[i].balance + amount for i, amount in net.items()})
        for hold_id, amount in from_hold.items():
            hold = holds[hold_id]
            hold.remaining -= amount
            accounts[hold.account_id].reserved -= amount
            if hold.remaining == 0:
                hold.is_open = False
                hold.closed_at = utcnow()
        for account_id, amount in net.items():
            accounts[account_id].balance += amount
        for account in accounts.values():
            if account.is_member and not (0 <= account.reserved <= account.balance):
                raise InsufficientFundsError(f"account {account.id} would hold more than it has")

        entry = JournalEntry(
            kind=kind,
            reason=reason,
            reference=reference,
            actor=actor,
            postings=[Posting(account_id=leg.account_id, amount=leg.amount) for leg in legs],
        )
        self.session.add(entry)
        self.session.flush()
        return entry

    def transfer(
        self,
        kind: str,
        reason: str,
        source: Account | int,
        target: Account | int,
        amount: int,
        *,
        reference: str | None = None,
        actor: str = "system",
        allow_frozen: bool = False,
    ) -> JournalEntry:
        """Move ``amount`` from ``source`` to ``target`` (same asset) as one journal entry."""
        _check_amount(amount)
        source_id = source if isinstance(source, int) else source.id
        target_id = target if isinstance(target, int) else target.id
        return self.post(
            kind,
            reason,
            [Leg(source_id, -amount), Leg(target_id, amount)],
            reference=reference,
            actor=actor,
            allow_frozen=allow_frozen,
        )

    # --- holds ------------------------------------------------------------------------------

    def _lock_holds(self, hold_ids: Iterable[int]) -> dict[int, Hold]:
        ids = sorted(set(hold_ids))
        if not ids:
            return {}
        rows = self.session.scalars(
            select(Hold)
            .where(Hold.id.in_(ids))
            .order_by(Hold.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).all()
        holds = {row.id: row for row in rows}
        if len(holds) != len(ids):
            raise HoldClosedError(f"unknown holds {sorted(set(ids) - holds.keys())}")
        return holds

    def reserve(
        self, account: Account | int, amount: int, reason: str, *, reference: str | None = None
    ) -> Hold:
        """Hold ``amount`` of a member account's available balance.

        Idempotent on ``reference``: the same reference returns the existing hold (when it is
        for the same account and amount) instead of reserving twice.
        """
        _check_amount(amount)
        account_id = account if isinstance(account, int) else account.id
        if reference is not None:
            existing = self.session.scalar(select(Hold).where(Hold.reference == reference))
            if existing is not None:
                if existing.account_id != account_id or existing.amount != amount:
                    raise IdempotencyConflictError(
                        f"hold reference {reference!r} names another hold"
                    )
                return existing
        locked = self._lock([account_id])[account_id]
        if locked.member_id is None:
            raise UnknownAccountError("holds are for member accounts")
        member = self._members([locked])[locked.member_id]
        if member.frozen:
            raise MemberFrozenError(f"member {member.id} is frozen")
        if amount > locked.available:
            raise InsufficientFundsError(
                f"account {account_id} ({locked.asset}) has {locked.available} available, "
                f"needs {amount}"
            )
        locked.reserved += amount
        hold = Hold(
            account_id=account_id,
            amount=amount,
            remaining=amount,
            reference=reference,
            reason=reason,
            is_open=True,
        )
        self.session.add(hold)
        self.session.flush()
        return hold

    def release(self, hold: Hold | int, amount: int | None = None) -> Hold:
        """Give back ``amount`` (default: all that remains) of a hold to the available balance.

        Releasing is allowed for frozen members: it moves nothing out of their account.
        """
        hold_id = hold if isinstance(hold, int) else hold.id
        current = self.session.get(Hold, hold_id)
        if current is None:
            raise HoldClosedError(f"unknown hold {hold_id}")
        account = self._lock([current.account_id])[current.account_id]
        locked = self._lock_holds([hold_id])[hold_id]
        amount = locked.remaining if amount is None else amount
        if amount == 0 and locked.remaining == 0:
            locked.is_open = False
            return locked
        _check_amount(amount)
        if not locked.is_open or amount > locked.remaining:
            raise HoldClosedError(
                f"hold {hold_id} cannot release {amount} (remaining {locked.remaining})"
            )
        locked.remaining -= amount
        account.reserved -= amount
        if locked.remaining == 0:
            locked.is_open = False
            locked.closed_at = utcnow()
        self.session.flush()
        return locked

    def settle(
        self,
        hold: Hold | int,
        target: Account | int,
        amount: int,
        kind: str,
        reason: str,
        *,
        reference: str | None = None,
        actor: str = "system",
    ) -> JournalEntry:
        """Pay ``amount`` out of a hold to ``target`` (settle-from-hold) as one journal entry."""
        _check_amount(amount)
        hold_id = hold if isinstance(hold, int) else hold.id
        current = self.session.get(Hold, hold_id)
        if current is None:
            raise HoldClosedError(f"unknown hold {hold_id}")
        target_id = target if isinstance(target, int) else target.id
        return self.post(
            kind,
            reason,
            [Leg(current.account_id, -amount, hold_id), Leg(target_id, amount)],
            reference=reference,
            actor=actor,
        )

    # --- members ----------------------------------------------------------------------------

    def freeze(self, member_id: int, reason: str) -> Member:
        """Stop a member's funds from moving out (credits and releases still happen)."""
        member = self._get_member(member_id)
        member.frozen = True
        member.frozen_reason = reason
        self.session.flush()
        return member

    def unfreeze(self, member_id: int) -> Member:
        """Lift a freeze."""
        member = self._get_member(member_id)
        member.frozen = False
        member.frozen_reason = None
        self.session.flush()
        return member

    def _get_member(self, member_id: int) -> Member:
        member = self.session.get(Member, member_id, with_for_update=True)
        if member is None:
            raise UnknownAccountError(f"no member {member_id}")
        return member

    def balances(self, member_id: int) -> Mapping[str, tuple[int, int]]:
        """``{asset: (balance, reserved)}`` of a member."""
        rows = self.session.scalars(select(Account).where(Account.member_id == member_id))
        return {a.asset: (a.balance, a.reserved) for a in rows}
