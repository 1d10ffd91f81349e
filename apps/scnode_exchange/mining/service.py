"""Worker registry and payout split, each operation in one transaction.

Registry changes are recorded in the owner audit log (``OwnerOperations.record``), whether a
member or the owner made them (``actor`` = ``member:<id>`` or the owner's name).

A payout is split only when mature (coinbase: ``COINBASE_MATURITY`` = 100 confirmations, like
both chains' consensus rule) or confirmed (ordinary transaction: the pool's confirmation
setting). The split is ONE journal entry ``payout:<pool>:<payout_id>``: ``node_wallet -amount``
→ each member's part, the owner fee (``fees``), the unknown workers' part (``suspense``) and
the integer-division remainder (``mining_pool``). Splitting the same payout again returns the
first result and credits nothing more; the same id with a different amount is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.ledger import (
    AZC,
    FEES,
    MINING_POOL,
    NODE_WALLET,
    SATS,
    SUSPENSE,
    Account,
    Ledger,
    Member,
)
from scnode_exchange.ledger.service import Leg
from scnode_exchange.mining.models import (
    POOLS,
    MiningPayout,
    MiningPayoutPart,
    MiningPayoutWork,
    MiningWorker,
)
from scnode_exchange.mining.split import Split, SplitInputError, exact_work, split_payout
from scnode_exchange.owner.service import OwnerOperations

COINBASE_MATURITY = 100
POOL_ASSET = {"btc": SATS, "azc": AZC}
WORKER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")


class MiningError(Exception):
    """A refused mining operation (bad input, unknown worker, conflicting payout)."""


class WorkerTakenError(MiningError):
    """The worker name is registered to another member in that pool."""


class UnknownWorkerError(MiningError):
    """No such registered worker (or not the caller's)."""


class ImmaturePayoutError(MiningError):
    """The payout has not enough confirmations to be split yet."""


class WindowOverlapError(MiningError):
    """The payout's window overlaps the window of a payout already split in that pool."""


class PayoutConflictError(MiningError):
    """The payout id was split before with different figures."""


@dataclass(frozen=True, slots=True)
class MiningConfig:
    """Per-pool owner fee (basis points) and confirmations an ordinary payout needs."""

    fee_bps: Mapping[str, int] = field(default_factory=lambda: {"btc": 0, "azc": 0})
    confirmations: Mapping[str, int] = field(default_factory=lambda: {"btc": 6, "azc": 6})


@dataclass(frozen=True, slots=True)
class PoolPayout:
    """A payout the pool made to the node, and the window whose work it pays."""

    pool: str
    payout_id: str
    amount: int
    confirmations: int
    coinbase: bool
    window_start: int
    window_end: int


@dataclass(frozen=True, slots=True)
class WorkerView:
    pool: str
    name: str
    member_id: int


@dataclass(frozen=True, slots=True)
class PartView:
    member_id: int
    work: float
    amount: int
    share: float  # of the payout's total work, 0..1


@dataclass(frozen=True, slots=True)
class PayoutView:
    id: int
    pool: str
    payout_id: str
    asset: str
    amount: int
    window_start: int
    window_end: int
    fee_bps: int
    fee: int
    unattributed_amount: int
    remainder: int
    total_work: float
    unattributed_work: float
    entry_id: int
    parts: tuple[PartView, ...]
    unknown_workers: tuple[tuple[str, float], ...]

    def as_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__ if k not in ("parts",)}
        out["parts"] = [
            {"member_id": p.member_id, "work": p.work, "amount": p.amount, "share": p.share}
            for p in self.parts
        ]
        out["unknown_workers"] = [{"worker": w, "work": x} for w, x in self.unknown_workers]
        return out


@dataclass(frozen=True, slots=True)
class UnknownWorkerView:
    pool: str
    worker: str
    payouts: int
    work: float


def _check_pool(pool: str) -> str:
    if pool not in POOLS:
        raise MiningError(f"unknown pool {pool!r} (one of {', '.join(POOLS)})")
    return pool


def _check_name(name: str) -> str:
    if not WORKER_NAME.match(name):
        raise MiningError(f"invalid worker name {name!r}")
    return name


class MiningService:
    """Worker registry and payout split on a session factory."""

    def __init__(self, sessions: sessionmaker[Session], config: MiningConfig | None = None):
        self.sessions = sessions
        self.config = config or MiningConfig()

    # --- registry ---------------------------------------------------------------------------

    def _worker(self, session: Session, pool: str, name: str) -> MiningWorker | None:
        return session.scalar(
            select(MiningWorker).where(MiningWorker.pool == pool, MiningWorker.name == name)
        )

    def register(self, member_id: int, pool: str, name: str) -> tuple[WorkerView, bool]:
        """The member claims a worker name in a pool. Returns (worker, created); the member's
        own name again is a no-op; another member's name is a WorkerTakenError."""
        _check_pool(pool)
        _check_name(name)
        try:
            with self.sessions.begin() as session:
                if session.get(Member, member_id) is None:
                    raise MiningError(f"no member {member_id}")
                found = self._worker(session, pool, name)
                if found is not None:
                    if found.member_id != member_id:
                        raise WorkerTakenError(f"worker {name!r} is taken in pool {pool}")
                    return WorkerView(pool, name, member_id), False
                session.add(MiningWorker(pool=pool, name=name, member_id=member_id))
                session.flush()
                OwnerOperations.record(
                    session,
                    f"member:{member_id}",
                    "mining_worker_register",
                    "registered by the member",
                    member_id=member_id,
                    details={"pool": pool, "worker": name},
                )
                return WorkerView(pool, name, member_id), True
        except IntegrityError as exc:  # a concurrent registration of the same name won
            raise WorkerTakenError(f"worker {name!r} is taken in pool {pool}") from exc

    def workers(self, *, member_id: int | None = None, pool: str | None = None) -> list[WorkerView]:
        """Registered workers (of one member / one pool), by pool and name."""
        query = select(MiningWorker).order_by(MiningWorker.pool, MiningWorker.name)
        if member_id is not None:
            query = query.where(MiningWorker.member_id == member_id)
        if pool is not None:
            query = query.where(MiningWorker.pool == _check_pool(pool))
        with self.sessions() as session:
            return [WorkerView(w.pool, w.name, w.member_id) for w in session.scalars(query)]

    def assign(self, actor: str, pool: str, name: str, member_id: int, reason: str) -> WorkerView:
        """Owner: register the worker for ``member_id`` or move it there from another member."""
        _check_pool(pool)
        _check_name(name)
        with self.sessions.begin() as session:
            if session.get(Member, member_id) is None:
                raise MiningError(f"no member {member_id}")
            found = self._worker(session, pool, name)
            previous = None if found is None else found.member_id
            if found is None:
                session.add(MiningWorker(pool=pool, name=name, member_id=member_id))
            else:
                found.member_id = member_id
            session.flush()
            OwnerOperations.record(
                session,
                actor,
                "mining_worker_assign",
                reason,
                member_id=member_id,
                details={"pool": pool, "worker": name, "previous_member": previous},
            )
            return WorkerView(pool, name, member_id)

    def remove(
        self, actor: str, pool: str, name: str, reason: str, *, member_id: int | None = None
    ) -> None:
        """Remove a registration (owner; or the member itself when ``member_id`` is given —
        another member's worker then looks exactly like a missing one)."""
        _check_pool(pool)
        with self.sessions.begin() as session:
            found = self._worker(session, pool, name)
            if found is None or (member_id is not None and found.member_id != member_id):
                raise UnknownWorkerError(f"no worker {name!r} in pool {pool}")
            owner_of = found.member_id
            session.delete(found)
            session.flush()
            OwnerOperations.record(
                session,
                actor,
                "mining_worker_remove",
                reason,
                member_id=owner_of,
                details={"pool": pool, "worker": name},
            )

    # --- payouts ----------------------------------------------------------------------------

    def required_confirmations(self, payout: PoolPayout) -> int:
        """Coinbase: 100; ordinary transaction: the pool's confirmation setting."""
        return COINBASE_MATURITY if payout.coinbase else self.config.confirmations[payout.pool]

    def split(
        self, payout: PoolPayout, work: Mapping[str, float | int], *, actor: str = "system"
    ) -> tuple[PayoutView, bool]:
        """Split a mature payout by ``work`` (worker name → acknowledged difficulty in the
        window). Returns (payout, created): the same payout again is (first result, False)."""
        pool = _check_pool(payout.pool)
        if type(payout.amount) is not int or payout.amount <= 0:
            raise MiningError(f"amount must be a positive integer, got {payout.amount!r}")
        if not payout.payout_id or len(payout.payout_id) > 128:
            raise MiningError("payout_id must be 1..128 characters")
        if payout.window_end <= payout.window_start:
            raise MiningError("window_end must be after window_start")
        needed = self.required_confirmations(payout)
        if payout.confirmations < needed:
            raise ImmaturePayoutError(
                f"payout {payout.payout_id} has {payout.confirmations} confirmations, "
                f"needs {needed}"
            )
        try:
            exact = {name: exact_work(w) for name, w in work.items()}
        except SplitInputError as exc:
            raise MiningError(str(exc)) from exc
        fee_bps = self.config.fee_bps[pool]
        try:
            with self.sessions.begin() as session:
                return self._split(session, payout, exact, fee_bps, actor)
        except IntegrityError:
            # a concurrent split of the same payout committed first: report it
            with self.sessions.begin() as session:
                existing = self._existing(session, payout)
                if existing is None:
                    raise
                return existing, False

    def find(self, pool: str, payout_id: str) -> PayoutView | None:
        """The split payout ``pool``/``payout_id``, if any."""
        with self.sessions() as session:
            row = session.scalar(
                select(MiningPayout).where(
                    MiningPayout.pool == _check_pool(pool), MiningPayout.payout_id == payout_id
                )
            )
            return None if row is None else self._view(session, row)

    def last_window(self, pool: str) -> tuple[int, int] | None:
        """The pool's latest split window (start, end), if any."""
        with self.sessions() as session:
            row = session.execute(
                select(MiningPayout.window_start, MiningPayout.window_end)
                .where(MiningPayout.pool == _check_pool(pool))
                .order_by(MiningPayout.window_end.desc(), MiningPayout.id.desc())
                .limit(1)
            ).first()
            return None if row is None else (row[0], row[1])

    def last_window_end(self, pool: str) -> int | None:
        """Where the pool's next window starts (the latest split window's end), if any."""
        with self.sessions() as session:
            return session.scalar(
                select(func.max(MiningPayout.window_end)).where(
                    MiningPayout.pool == _check_pool(pool)
                )
            )

    def _existing(self, session: Session, payout: PoolPayout) -> PayoutView | None:
        row = session.scalar(
            select(MiningPayout).where(
                MiningPayout.pool == payout.pool, MiningPayout.payout_id == payout.payout_id
            )
        )
        if row is None:
            return None
        if row.amount != payout.amount:
            raise PayoutConflictError(
                f"payout {payout.pool}:{payout.payout_id} was split with amount {row.amount}"
            )
        return self._view(session, row)

    def _split(
        self,
        session: Session,
        payout: PoolPayout,
        work: Mapping[str, Fraction],
        fee_bps: int,
        actor: str,
    ) -> tuple[PayoutView, bool]:
        existing = self._existing(session, payout)
        if existing is not None:
            return existing, False
        overlap = session.scalar(
            select(MiningPayout.payout_id).where(
                MiningPayout.pool == payout.pool,
                MiningPayout.window_start < payout.window_end,
                MiningPayout.window_end > payout.window_start,
                # a second block found in the same window pays for the same work
                ~(
                    (MiningPayout.window_start == payout.window_start)
                    & (MiningPayout.window_end == payout.window_end)
                ),
            )
        )
        if overlap is not None:
            # the same work would be paid twice
            raise WindowOverlapError(
                f"window {payout.window_start}..{payout.window_end} overlaps payout {overlap}"
            )
        registry: dict[str, int] = {
            name: member
            for name, member in session.execute(
                select(MiningWorker.name, MiningWorker.member_id).where(
                    MiningWorker.pool == payout.pool, MiningWorker.name.in_(list(work))
                )
            )
        }
        member_work: dict[int, Fraction] = {}
        unknown = Fraction(0)
        for name, w in work.items():
            member = registry.get(name)
            if member is None:
                unknown += w
            else:
                member_work[member] = member_work.get(member, Fraction(0)) + w
        parts = split_payout(payout.amount, fee_bps, member_work, unknown)
        asset = POOL_ASSET[payout.pool]
        entry = self._post(session, payout, asset, parts, actor)
        row = MiningPayout(
            pool=payout.pool,
            payout_id=payout.payout_id,
            asset=asset,
            amount=payout.amount,
            confirmations=payout.confirmations,
            coinbase=payout.coinbase,
            window_start=payout.window_start,
            window_end=payout.window_end,
            fee_bps=fee_bps,
            fee=parts.fee,
            members_amount=sum(parts.members.values()),
            unattributed_amount=parts.unattributed,
            remainder=parts.remainder,
            total_work=float(sum(work.values(), Fraction(0))),
            unattributed_work=float(unknown),
            entry_id=entry,
            actor=actor,
        )
        session.add(row)
        session.flush()
        if work:
            session.execute(
                insert(MiningPayoutWork),
                [
                    {
                        "payout_id": row.id,
                        "worker": name,
                        "member_id": registry.get(name),
                        "work": float(w),
                    }
                    for name, w in sorted(work.items())
                ],
            )
        if parts.members:
            session.execute(
                insert(MiningPayoutPart),
                [
                    {
                        "payout_id": row.id,
                        "member_id": member,
                        "work": float(member_work[member]),
                        "amount": amount,
                    }
                    for member, amount in sorted(parts.members.items())
                ],
            )
        return self._view(session, row), True

    def _post(
        self, session: Session, payout: PoolPayout, asset: str, parts: Split, actor: str
    ) -> int:
        ledger = Ledger(session)
        legs = [Leg(ledger.system_account(NODE_WALLET, asset).id, -payout.amount)]
        paid = sorted(m for m, amount in parts.members.items() if amount)
        accounts: dict[int, int] = {
            member: account
            for member, account in session.execute(
                select(Account.member_id, Account.id).where(
                    Account.asset == asset, Account.member_id.in_(paid)
                )
            )
            if member is not None
        }
        missing = set(paid) - accounts.keys()
        if missing:
            raise MiningError(f"members {sorted(missing)} have no {asset} account")
        legs += [Leg(accounts[m], parts.members[m]) for m in paid]
        for name, amount in (
            (FEES, parts.fee),
            (SUSPENSE, parts.unattributed),
            (MINING_POOL, parts.remainder),
        ):
            if amount:
                legs.append(Leg(ledger.system_account(name, asset).id, amount))
        entry = ledger.post(
            "mining_payout",
            f"{payout.pool} pool payout {payout.payout_id} split "
            f"(window {payout.window_start}..{payout.window_end})",
            legs,
            reference=f"payout:{payout.pool}:{payout.payout_id}",
            actor=actor,
        )
        return entry.id

    def _view(
        self, session: Session, row: MiningPayout, member_id: int | None = None
    ) -> PayoutView:
        part_query = select(MiningPayoutPart).where(MiningPayoutPart.payout_id == row.id)
        if member_id is not None:
            part_query = part_query.where(MiningPayoutPart.member_id == member_id)
        total = row.total_work
        parts = tuple(
            PartView(p.member_id, p.work, p.amount, p.work / total if total else 0.0)
            for p in session.scalars(part_query.order_by(MiningPayoutPart.member_id))
        )
        unknown: tuple[tuple[str, float], ...] = ()
        if member_id is None:
            unknown = tuple(
                (worker, work)
                for worker, work in session.execute(
                    select(MiningPayoutWork.worker, MiningPayoutWork.work)
                    .where(
                        MiningPayoutWork.payout_id == row.id, MiningPayoutWork.member_id.is_(None)
                    )
                    .order_by(MiningPayoutWork.worker)
                )
            )
        return PayoutView(
            id=row.id,
            pool=row.pool,
            payout_id=row.payout_id,
            asset=row.asset,
            amount=row.amount,
            window_start=row.window_start,
            window_end=row.window_end,
            fee_bps=row.fee_bps,
            fee=row.fee,
            unattributed_amount=row.unattributed_amount,
            remainder=row.remainder,
            total_work=row.total_work,
            unattributed_work=row.unattributed_work,
            entry_id=row.entry_id,
            parts=parts,
            unknown_workers=unknown,
        )

    def payouts(
        self, *, pool: str | None = None, member_id: int | None = None, limit: int = 100
    ) -> list[PayoutView]:
        """Payouts, newest first. With ``member_id``: only those the member has a part in, with
        only the member's own part (and no other member's or worker's detail)."""
        query = select(MiningPayout).order_by(MiningPayout.id.desc()).limit(limit)
        if pool is not None:
            query = query.where(MiningPayout.pool == _check_pool(pool))
        if member_id is not None:
            query = query.where(
                MiningPayout.id.in_(
                    select(MiningPayoutPart.payout_id).where(
                        MiningPayoutPart.member_id == member_id
                    )
                )
            )
        with self.sessions() as session:
            return [self._view(session, row, member_id) for row in session.scalars(query)]

    def unknown_workers(self, pool: str | None = None) -> list[UnknownWorkerView]:
        """Workers whose work went to suspense (not registered when a payout was split) and
        that are still not registered, with their total work and number of payouts."""
        registered = select(MiningWorker.id).where(
            MiningWorker.pool == MiningPayout.pool, MiningWorker.name == MiningPayoutWork.worker
        )
        query = (
            select(
                MiningPayout.pool,
                MiningPayoutWork.worker,
                func.count(MiningPayoutWork.id),
                func.sum(MiningPayoutWork.work),
            )
            .join(MiningPayout, MiningPayout.id == MiningPayoutWork.payout_id)
            .where(MiningPayoutWork.member_id.is_(None), ~registered.exists())
            .group_by(MiningPayout.pool, MiningPayoutWork.worker)
            .order_by(MiningPayout.pool, MiningPayoutWork.worker)
        )
        if pool is not None:
            query = query.where(MiningPayout.pool == _check_pool(pool))
        with self.sessions() as session:
            return [
                UnknownWorkerView(p, w, int(n), float(s or 0.0))
                for p, w, n, s in session.execute(query)
            ]


def payout_from_json(data: Mapping[str, Any]) -> PoolPayout:
    """A PoolPayout from a JSON-like mapping (the owner route's body)."""
    return PoolPayout(
        pool=str(data["pool"]),
        payout_id=str(data["payout_id"]),
        amount=int(data["amount"]),
        confirmations=int(data["confirmations"]),
        coinbase=bool(data["coinbase"]),
        window_start=int(data["window_start"]),
        window_end=int(data["window_end"]),
    )


__all__: Sequence[str] = (
    "COINBASE_MATURITY",
    "ImmaturePayoutError",
    "MiningConfig",
    "MiningError",
    "MiningService",
    "PayoutConflictError",
    "PayoutView",
    "PoolPayout",
    "UnknownWorkerError",
    "WindowOverlapError",
    "WorkerTakenError",
    "payout_from_json",
)
