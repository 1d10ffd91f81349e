"""Deposits in the database: addresses, what members see, and the credit state machine.

``DepositService.apply()`` takes observations of chain outputs (from chain API events or from
reading the wallet) and, in ONE transaction per batch, moves each deposit through its states
and posts the ledger entries that go with them:

* ``pending`` → ``credited`` at N confirmations (per chain): entry ``deposit:<chain>:<txid>:
  <vout>`` (node_wallet → member). The deposit row's state and the entry's unique reference
  make a replayed or duplicated observation a no-op.
* an output that leaves the chain before N is ``reorged`` (never credited); if it comes back
  it is ``pending`` again.
* a credited output that leaves the chain (no longer in a block, or in another block below N
  confirmations) is a **reorg after credit**. Only an observation read from the wallet itself
  (``verified``) may trigger it — an event may be stale — so unverified ones are returned for
  the watcher to check first. Then, in one entry ``deposit-reversal:<chain>:<txid>:<vout>``:

      suspense            +amount   (the owner decides: re-credit or write off)
      member              -taken    taken = min(amount, member's available balance)
      owner_receivable    -rest     rest = amount - taken: what the member already spent

  so the member's balance never goes below zero, the entry balances, and the member's debt is
  on the alert row. When a receivable is booked the member is frozen (DESIGN §8). An alert row
  (``deposit_alerts``), an ERROR log line and a Prometheus counter make it visible.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.deposits.models import Deposit, DepositAddress, DepositAlert, DepositCursor
from scnode_exchange.ledger import (
    AZC,
    NODE_WALLET,
    OWNER_RECEIVABLE,
    SATS,
    SUSPENSE,
    Account,
    JournalEntry,
    Ledger,
    Leg,
    Member,
)
from scnode_exchange.ledger.models import utcnow
from scnode_exchange.trading.writer import TradeWriter

log = logging.getLogger(__name__)

DEFAULT_CHAIN_ASSETS = {"bitcoin": SATS, "azcoin": AZC}
REVERSAL_FREEZE_REASON = "deposit reorged after credit: funds owed, owner decides"


@dataclass(frozen=True)
class ChainDepositConfig:
    """How one chain's deposits are credited: the ledger asset and N confirmations."""

    asset: str
    confirmations: int

    def __post_init__(self) -> None:
        if self.confirmations < 1:
            raise ValueError("confirmations must be at least 1")


def chain_asset(chain: str, asset: str | None = None) -> str:
    """bitcoin → SATS, azcoin → AZC, a microcurrency → its configured code."""
    if asset:
        return asset
    try:
        return DEFAULT_CHAIN_ASSETS[chain]
    except KeyError:
        raise ValueError(f"chain {chain!r} needs an explicit asset code") from None


@dataclass(frozen=True)
class Observation:
    """What is known about one output paying an address: ``confirmations`` < 0 means it is no
    longer in the chain or the mempool (reorged away, conflicted, unknown to the wallet).
    ``verified``: read from the wallet just now, not replayed from an event."""

    chain: str
    txid: str
    vout: int
    address: str
    amount: int
    confirmations: int
    block_hash: str | None = None
    block_height: int | None = None
    verified: bool = False


@dataclass
class ApplyResult:
    credited: list[str] = field(default_factory=list)
    reversed: list[str] = field(default_factory=list)
    reorged: list[str] = field(default_factory=list)
    # observations that would reverse a credit but came from an event: check with the wallet
    to_verify: list[Observation] = field(default_factory=list)


@dataclass(frozen=True)
class DepositView:
    """A deposit as a member or the owner sees it."""

    id: int
    chain: str
    txid: str
    vout: int
    address: str
    asset: str
    amount: int
    confirmations: int
    required_confirmations: int
    state: str
    block_hash: str | None
    block_height: int | None
    first_seen_at: datetime
    credited_at: datetime | None
    reversed_at: datetime | None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "chain": self.chain,
            "txid": self.txid,
            "vout": self.vout,
            "address": self.address,
            "asset": self.asset,
            "amount": self.amount,
            "confirmations": self.confirmations,
            "required_confirmations": self.required_confirmations,
            "state": self.state,
            "block_hash": self.block_hash,
            "block_height": self.block_height,
            "first_seen_at": self.first_seen_at.isoformat(),
            "credited_at": self.credited_at.isoformat() if self.credited_at else None,
            "reversed_at": self.reversed_at.isoformat() if self.reversed_at else None,
        }


@dataclass(frozen=True)
class AlertView:
    id: int
    deposit_id: int
    deposit: str
    member_id: int
    chain: str
    asset: str
    kind: str
    amount: int
    taken_from_member: int
    receivable: int
    member_frozen: bool
    detail: str
    deposit_state: str
    deposit_confirmations: int
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "deposit_id": self.deposit_id,
            "deposit": self.deposit,
            "member_id": self.member_id,
            "chain": self.chain,
            "asset": self.asset,
            "kind": self.kind,
            "amount": self.amount,
            "taken_from_member": self.taken_from_member,
            "receivable": self.receivable,
            "member_frozen": self.member_frozen,
            "detail": self.detail,
            "deposit_state": self.deposit_state,
            "deposit_confirmations": self.deposit_confirmations,
            "created_at": self.created_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "resolved_by": self.resolved_by,
            "resolution": self.resolution,
        }


@dataclass
class _Batch:
    """What one ``apply`` transaction decided, booked at its end."""

    deposits: dict[str, Deposit]
    credits: list[tuple[Deposit, int]] = field(default_factory=list)
    reversals: list[tuple[Deposit, str]] = field(default_factory=list)


class DepositError(Exception):
    """A deposit request refused for a reason the caller can fix (unknown chain, alert...)."""


class DepositService:
    """Deposit bookkeeping over a session factory; each public method is one transaction."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        chains: Mapping[str, ChainDepositConfig],
    ) -> None:
        self.sessions = sessions
        self.chains = dict(chains)
        self.credited_total: dict[str, int] = dict.fromkeys(self.chains, 0)
        self.reversed_total: dict[str, int] = dict.fromkeys(self.chains, 0)

    def config(self, chain: str) -> ChainDepositConfig:
        try:
            return self.chains[chain]
        except KeyError:
            raise DepositError(f"no deposits on chain {chain!r}") from None

    # -- addresses ---------------------------------------------------------------------------
    def record_address(self, member_id: int, chain: str, address: str) -> None:
        """Remember that ``address`` belongs to ``member_id`` (idempotent)."""
        self.config(chain)
        with self.sessions.begin() as session:
            found = session.scalar(
                select(DepositAddress).where(
                    DepositAddress.chain == chain, DepositAddress.address == address
                )
            )
            if found is None:
                session.add(DepositAddress(member_id=member_id, chain=chain, address=address))
            elif found.member_id != member_id:
                raise DepositError(f"address {address} belongs to another member")

    def addresses(self, member_id: int, chain: str | None = None) -> list[tuple[str, str]]:
        """``[(chain, address)]`` of a member, oldest first."""
        with self.sessions() as session:
            query = select(DepositAddress.chain, DepositAddress.address).where(
                DepositAddress.member_id == member_id
            )
            if chain is not None:
                query = query.where(DepositAddress.chain == chain)
            return [(c, a) for c, a in session.execute(query.order_by(DepositAddress.id))]

    def members_with_addresses(self, chain: str) -> list[int]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(DepositAddress.member_id)
                    .where(DepositAddress.chain == chain)
                    .distinct()
                    .order_by(DepositAddress.member_id)
                )
            )

    def known_addresses(self, chain: str, addresses: Iterable[str]) -> set[str]:
        """Which of ``addresses`` are deposit addresses of ``chain``."""
        listed = sorted(set(addresses))
        found: set[str] = set()
        with self.sessions() as session:
            for start in range(0, len(listed), 500):
                found.update(
                    session.scalars(
                        select(DepositAddress.address).where(
                            DepositAddress.chain == chain,
                            DepositAddress.address.in_(listed[start : start + 500]),
                        )
                    )
                )
        return found

    def outputs_of(self, chain: str, txid: str) -> list[tuple[int, str, int]]:
        """``[(vout, address, amount)]`` of the deposits a transaction made."""
        with self.sessions() as session:
            rows = session.execute(
                select(Deposit.vout, Deposit.address, Deposit.amount).where(
                    Deposit.chain == chain, Deposit.txid == txid
                )
            )
            return [(v, a, n) for v, a, n in rows]

    def settled_txids(self, chain: str, depth: int) -> set[str]:
        """Transactions all of whose deposits are credited (or in suspense) and at least
        ``depth`` deep: nothing about them can change any more."""
        with self.sessions() as session:
            unsettled = select(Deposit.txid).where(
                Deposit.chain == chain,
                (Deposit.state.in_(["pending", "reorged"])) | (Deposit.confirmations < depth),
            )
            return set(
                session.scalars(
                    select(Deposit.txid)
                    .where(Deposit.chain == chain, Deposit.txid.not_in(unsettled))
                    .distinct()
                )
            )

    # -- views -------------------------------------------------------------------------------
    def _view(self, d: Deposit) -> DepositView:
        required = self.chains[d.chain].confirmations if d.chain in self.chains else 0
        return DepositView(
            d.id,
            d.chain,
            d.txid,
            d.vout,
            d.address,
            d.asset,
            d.amount,
            d.confirmations,
            required,
            d.state,
            d.block_hash,
            d.block_height,
            d.first_seen_at,
            d.credited_at,
            d.reversed_at,
        )

    def history(
        self,
        member_id: int,
        *,
        chain: str | None = None,
        states: Iterable[str] | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[DepositView]:
        """A member's deposits, newest first; page with ``before_id`` = last id seen."""
        with self.sessions() as session:
            query = select(Deposit).where(Deposit.member_id == member_id)
            if chain is not None:
                query = query.where(Deposit.chain == chain)
            if states is not None:
                query = query.where(Deposit.state.in_(list(states)))
            if before_id is not None:
                query = query.where(Deposit.id < before_id)
            rows = session.scalars(query.order_by(Deposit.id.desc()).limit(limit))
            return [self._view(d) for d in rows]

    def pending(self, member_id: int, chain: str | None = None) -> list[DepositView]:
        """Seen, not yet credited (fewer than N confirmations)."""
        return self.history(member_id, chain=chain, states=["pending"], limit=1000)

    def get(self, chain: str, txid: str, vout: int) -> DepositView | None:
        with self.sessions() as session:
            d = session.scalar(_by_key(chain, txid, vout))
            return self._view(d) if d is not None else None

    def open_deposits(self, chain: str, below: int) -> list[DepositView]:
        """Deposits whose fate may still change: pending, reorged, and credited or in
        suspense with fewer than ``below`` confirmations."""
        with self.sessions() as session:
            rows = session.scalars(
                select(Deposit).where(
                    Deposit.chain == chain,
                    (Deposit.state.in_(["pending", "reorged"])) | (Deposit.confirmations < below),
                )
            )
            return [self._view(d) for d in rows]

    def alerts(self, *, include_resolved: bool = False) -> list[AlertView]:
        with self.sessions() as session:
            query = select(DepositAlert, Deposit).join(
                Deposit, Deposit.id == DepositAlert.deposit_id
            )
            if not include_resolved:
                query = query.where(DepositAlert.resolved_at.is_(None))
            return [
                AlertView(
                    a.id,
                    a.deposit_id,
                    d.key,
                    a.member_id,
                    a.chain,
                    a.asset,
                    a.kind,
                    a.amount,
                    a.taken_from_member,
                    a.receivable,
                    a.member_frozen,
                    a.detail,
                    d.state,
                    d.confirmations,
                    a.created_at,
                    a.resolved_at,
                    a.resolved_by,
                    a.resolution,
                )
                for a, d in session.execute(query.order_by(DepositAlert.id))
            ]

    def suspense_total(self, asset: str) -> int:
        """What the suspense account of ``asset`` holds."""
        with self.sessions() as session:
            return Ledger(session).system_account(SUSPENSE, asset).balance

    # -- cursor ------------------------------------------------------------------------------
    def cursor(self, chain: str) -> tuple[int | None, int | None]:
        """(last applied event id, last known tip height), (None, None) before the first run."""
        with self.sessions() as session:
            row = session.get(DepositCursor, chain)
            return (row.cursor, row.tip_height) if row is not None else (None, None)

    # -- the state machine -------------------------------------------------------------------
    def apply(
        self,
        observations: Sequence[Observation],
        *,
        chain: str | None = None,
        cursor: int | None = None,
        tip_height: int | None = None,
    ) -> ApplyResult:
        """Apply ``observations`` and (when given) store the event ``cursor``/``tip_height``
        of ``chain`` — all in one transaction, so a crash replays a batch whole or not at all.
        Outputs paying addresses that are not deposit addresses are ignored."""
        result = ApplyResult()
        with self.sessions.begin() as session:
            owners = self._address_owners(session, observations)
            relevant = [
                (owners[(o.chain, o.address)], o)
                for o in observations
                if o.chain in self.chains and (o.chain, o.address) in owners
            ]
            batch = _Batch(self._load(session, [o for _, o in relevant]))
            # rows are written once, at commit (reversals flush first: they need the ids)
            with session.no_autoflush:
                for member_id, obs in relevant:
                    self._apply_one(session, batch, member_id, obs, tip_height, result)
                self._book(session, batch)
            if chain is not None and (cursor is not None or tip_height is not None):
                row = session.get(DepositCursor, chain)
                if row is None:
                    row = DepositCursor(chain=chain, cursor=cursor or 0)
                    session.add(row)
                if cursor is not None:
                    row.cursor = cursor
                if tip_height is not None:
                    row.tip_height = tip_height
                row.updated_at = utcnow()
        for key in result.credited:
            chain_name = key.split(":", 1)[0]
            self.credited_total[chain_name] = self.credited_total.get(chain_name, 0) + 1
        return result

    @staticmethod
    def _load(session: Session, observations: Sequence[Observation]) -> dict[str, Deposit]:
        """The batch's known deposits, locked, by key."""
        by_chain: dict[str, set[str]] = {}
        for obs in observations:
            by_chain.setdefault(obs.chain, set()).add(obs.txid)
        found: dict[str, Deposit] = {}
        for chain, txids in by_chain.items():
            listed = sorted(txids)
            for start in range(0, len(listed), 500):
                rows = session.scalars(
                    select(Deposit)
                    .where(Deposit.chain == chain, Deposit.txid.in_(listed[start : start + 500]))
                    .with_for_update()
                )
                found.update({d.key: d for d in rows})
        return found

    @staticmethod
    def _address_owners(
        session: Session, observations: Sequence[Observation]
    ) -> dict[tuple[str, str], int]:
        wanted: dict[str, set[str]] = {}
        for obs in observations:
            wanted.setdefault(obs.chain, set()).add(obs.address)
        owners: dict[tuple[str, str], int] = {}
        for chain, addresses in wanted.items():
            listed = sorted(addresses)
            for start in range(0, len(listed), 500):
                rows = session.execute(
                    select(DepositAddress.address, DepositAddress.member_id).where(
                        DepositAddress.chain == chain,
                        DepositAddress.address.in_(listed[start : start + 500]),
                    )
                )
                owners.update({(chain, a): m for a, m in rows})
        return owners

    def _apply_one(
        self,
        session: Session,
        batch: _Batch,
        member_id: int,
        obs: Observation,
        tip_height: int | None,
        result: ApplyResult,
    ) -> None:
        config = self.chains[obs.chain]
        key = f"{obs.chain}:{obs.txid}:{obs.vout}"
        deposit = batch.deposits.get(key)
        if deposit is None:
            if obs.confirmations < 0:
                return  # never seen in the chain or mempool: nothing to track
            deposit = Deposit(
                chain=obs.chain,
                txid=obs.txid,
                vout=obs.vout,
                member_id=member_id,
                address=obs.address,
                asset=config.asset,
                amount=obs.amount,
                confirmations=0,
                state="pending",
                first_seen_at=utcnow(),
            )
            session.add(deposit)
            batch.deposits[key] = deposit
        elif deposit.amount != obs.amount:
            log.error(
                "deposit %s: amount %d != %d seen first", deposit.key, obs.amount, deposit.amount
            )
            return

        in_chain = obs.confirmations > 0
        if deposit.state in ("pending", "reorged"):
            if obs.confirmations < 0:
                if deposit.state == "pending":
                    result.reorged.append(deposit.key)
                    log.warning(
                        "deposit %s left the chain before %d confirmations: not credited",
                        deposit.key,
                        config.confirmations,
                    )
                deposit.state = "reorged"
            elif obs.confirmations >= config.confirmations:
                deposit.state = "credited"
                deposit.credited_block_hash = obs.block_hash
                deposit.credited_at = utcnow()
                batch.credits.append((deposit, obs.confirmations))
                result.credited.append(deposit.key)
            elif deposit.state != "pending":
                deposit.state = "pending"
        elif deposit.state == "credited":
            left = obs.confirmations <= 0 or (
                obs.block_hash != deposit.credited_block_hash
                and obs.confirmations < config.confirmations
            )
            if left and not obs.verified:
                result.to_verify.append(obs)
                return  # keep the row as it is until the wallet confirms it
            if not left and obs.block_hash and obs.block_hash != deposit.credited_block_hash:
                # re-included N deep in another block: that block is now what the credit rests on
                deposit.credited_block_hash = obs.block_hash
            if left:
                detail = (
                    f"credited in block {deposit.credited_block_hash} at "
                    f"{deposit.confirmations} confirmations; now "
                    + (
                        f"{obs.confirmations} confirmations in block {obs.block_hash}"
                        if in_chain
                        else "out of the chain"
                    )
                )
                deposit.state = "suspense"
                deposit.reversed_at = utcnow()
                batch.reversals.append((deposit, detail))
                result.reversed.append(deposit.key)
        height = deposit.block_height
        if obs.block_height is not None:
            height = obs.block_height
        elif in_chain and tip_height is not None:
            height = tip_height - obs.confirmations + 1
        elif not in_chain:
            height = None
        block_hash = obs.block_hash if in_chain else None
        if (deposit.confirmations, deposit.block_hash, deposit.block_height) != (
            obs.confirmations,
            block_hash,
            height,
        ):
            deposit.confirmations = obs.confirmations
            deposit.block_hash = block_hash
            deposit.block_height = height
            deposit.updated_at = utcnow()

    def _book(self, session: Session, batch: _Batch) -> None:
        """Post the batch's credits (few multi-row statements: TradeWriter, the ledger's rules
        on locked rows), then its reversals (rare: the ledger's own operations)."""
        if batch.credits:
            writer = TradeWriter(session)
            wallets = {
                asset: self._system_account_id(session, NODE_WALLET, asset)
                for asset in {d.asset for d, _ in batch.credits}
            }
            members = self._member_account_ids(session, batch.credits)
            legs = {
                deposit.key: [
                    Leg(wallets[deposit.asset], -deposit.amount),
                    Leg(members[(deposit.member_id, deposit.asset)], deposit.amount),
                ]
                for deposit, _ in batch.credits
            }
            writer.lock_accounts(leg.account_id for pair in legs.values() for leg in pair)
            for deposit, confirmations in batch.credits:
                writer.post(
                    "deposit",
                    f"{deposit.chain} deposit {deposit.txid}:{deposit.vout}, "
                    f"{confirmations} confirmations",
                    legs[deposit.key],
                    reference=f"deposit:{deposit.key}",
                    actor="system",
                )
            writer.flush()
            references = {f"deposit:{d.key}": d for d, _ in batch.credits}
            listed = sorted(references)
            for start in range(0, len(listed), 500):
                rows = session.execute(
                    select(JournalEntry.reference, JournalEntry.id).where(
                        JournalEntry.reference.in_(listed[start : start + 500])
                    )
                )
                for reference, entry_id in rows:
                    references[str(reference)].credit_entry_id = entry_id
        if batch.reversals:
            session.flush()
            ledger = Ledger(session)
            for deposit, detail in batch.reversals:
                self._reverse(session, ledger, deposit, detail)

    @staticmethod
    def _system_account_id(session: Session, name: str, asset: str) -> int:
        found = session.scalar(
            select(Account.id).where(Account.system_name == name, Account.asset == asset)
        )
        if found is None:
            raise DepositError(f"no system account {name} in {asset}")
        return int(found)

    @staticmethod
    def _member_account_ids(
        session: Session, credits: Sequence[tuple[Deposit, int]]
    ) -> dict[tuple[int, str], int]:
        wanted = sorted({d.member_id for d, _ in credits})
        found: dict[tuple[int, str], int] = {}
        for start in range(0, len(wanted), 500):
            rows = session.execute(
                select(Account.member_id, Account.asset, Account.id).where(
                    Account.member_id.in_(wanted[start : start + 500])
                )
            )
            found.update({(int(m or 0), str(a)): int(i) for m, a, i in rows})
        return found

    def _reverse(self, session: Session, ledger: Ledger, deposit: Deposit, detail: str) -> None:
        member_account = ledger.member_account(deposit.member_id, deposit.asset)
        locked = session.scalar(
            select(Account)
            .where(Account.id == member_account.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert locked is not None
        taken = max(0, min(deposit.amount, locked.available))
        rest = deposit.amount - taken
        legs = [Leg(ledger.system_account(SUSPENSE, deposit.asset).id, deposit.amount)]
        if taken:
            legs.append(Leg(member_account.id, -taken))
        if rest:
            legs.append(Leg(ledger.system_account(OWNER_RECEIVABLE, deposit.asset).id, -rest))
        # a re-credited deposit can be reorged away again: each episode has its own entries
        episode = _reversals(session, deposit.key) + 1
        entry = ledger.post(
            "deposit_reversal",
            f"{deposit.chain} deposit {deposit.txid}:{deposit.vout} reorged after credit: "
            f"{taken} taken back, {rest} owed by member {deposit.member_id}",
            legs,
            reference=_episode_reference("deposit-reversal", deposit.key, episode),
            allow_frozen=True,
        )
        frozen = False
        if rest:
            ledger.freeze(deposit.member_id, REVERSAL_FREEZE_REASON)
            frozen = True
        deposit.reversal_entry_id = entry.id
        alert = session.scalar(
            select(DepositAlert).where(DepositAlert.deposit_id == deposit.id).with_for_update()
        )
        if alert is None:
            session.add(
                DepositAlert(
                    deposit_id=deposit.id,
                    member_id=deposit.member_id,
                    chain=deposit.chain,
                    asset=deposit.asset,
                    kind="reorg_after_credit",
                    amount=deposit.amount,
                    taken_from_member=taken,
                    receivable=rest,
                    member_frozen=frozen,
                    detail=detail,
                )
            )
        else:  # reorged again after the owner re-credited it: the alert is open again
            alert.detail = (
                f"{detail} (reversal {episode}; the previous one was resolved by "
                f"{alert.resolved_by}: {alert.resolution})"
            )
            alert.taken_from_member = taken
            alert.receivable = rest
            alert.member_frozen = frozen
            alert.created_at = utcnow()
            alert.resolved_at = None
            alert.resolved_by = None
            alert.resolution = None
        self.reversed_total[deposit.chain] = self.reversed_total.get(deposit.chain, 0) + 1
        log.error(
            "ALERT deposit %s of member %d (%d %s) reorged after credit: moved to suspense, "
            "%d taken back, %d receivable%s",
            deposit.key,
            deposit.member_id,
            deposit.amount,
            deposit.asset,
            taken,
            rest,
            ", member frozen" if frozen else "",
        )

    # -- owner -------------------------------------------------------------------------------
    def resolve_alert(self, alert_id: int, *, action: str, actor: str, reason: str) -> AlertView:
        """Settle a reorg alert out of suspense.

        ``recredit`` (the output is back, at N confirmations or more): suspense pays the member
        back what was taken and clears the receivable; the freeze this alert set is lifted.
        ``write_off`` (the coins never arrived): suspense is cleared against the node wallet;
        the receivable stays for the owner to settle with the member (owner adjustments).
        """
        if action not in ("recredit", "write_off"):
            raise DepositError("action must be recredit or write_off")
        if not reason.strip():
            raise DepositError("a reason is required")
        with self.sessions.begin() as session:
            alert = session.get(DepositAlert, alert_id, with_for_update=True)
            if alert is None:
                raise DepositError(f"no deposit alert {alert_id}")
            if alert.resolved_at is not None:
                raise DepositError(f"alert {alert_id} is already resolved ({alert.resolution})")
            deposit = session.get(Deposit, alert.deposit_id, with_for_update=True)
            assert deposit is not None
            ledger = Ledger(session)
            suspense = ledger.system_account(SUSPENSE, alert.asset).id
            legs = [Leg(suspense, -alert.amount)]
            if action == "recredit":
                needed = self.config(deposit.chain).confirmations
                if deposit.confirmations < needed:
                    raise DepositError(
                        f"deposit has {deposit.confirmations} confirmations, needs {needed} "
                        "to be re-credited"
                    )
                if alert.taken_from_member:
                    legs.append(
                        Leg(
                            ledger.member_account(alert.member_id, alert.asset).id,
                            alert.taken_from_member,
                        )
                    )
                if alert.receivable:
                    receivable = ledger.system_account(OWNER_RECEIVABLE, alert.asset).id
                    legs.append(Leg(receivable, alert.receivable))
            else:
                legs.append(Leg(ledger.system_account(NODE_WALLET, alert.asset).id, alert.amount))
            ledger.post(
                f"deposit_{action}",
                f"alert {alert.id} ({deposit.key}): {reason}",
                legs,
                reference=_episode_reference(
                    f"deposit-{action}", deposit.key, _reversals(session, deposit.key)
                ),
                actor=actor,
                allow_frozen=True,
            )
            if action == "recredit":
                deposit.state = "credited"
                deposit.credited_block_hash = deposit.block_hash
                member = session.get(Member, alert.member_id)
                if (
                    alert.member_frozen
                    and member
                    and member.frozen_reason == REVERSAL_FREEZE_REASON
                ):
                    ledger.unfreeze(alert.member_id)
            alert.resolved_at = utcnow()
            alert.resolved_by = actor
            alert.resolution = f"{action}: {reason}"
            session.flush()
        resolved = [a for a in self.alerts(include_resolved=True) if a.id == alert_id]
        return resolved[0]

    def deposit_count(self, chain: str, state: str) -> int:
        with self.sessions() as session:
            return int(
                session.scalar(
                    select(func.count(Deposit.id)).where(
                        Deposit.chain == chain, Deposit.state == state
                    )
                )
                or 0
            )


def _reversals(session: Session, key: str) -> int:
    """How many times the credit of deposit ``key`` was reversed (reorged after credit)."""
    base = f"deposit-reversal:{key}"
    return int(
        session.scalar(
            select(func.count(JournalEntry.id)).where(
                (JournalEntry.reference == base)
                | JournalEntry.reference.startswith(f"{base}:", autoescape=True)
            )
        )
        or 0
    )


def _episode_reference(prefix: str, key: str, episode: int) -> str:
    """``<prefix>:<key>`` for a deposit's first reversal and its resolution, then
    ``<prefix>:<key>:<n>`` for the n-th (each reorg after a re-credit is a new episode)."""
    return f"{prefix}:{key}" if episode <= 1 else f"{prefix}:{key}:{episode}"


def _by_key(chain: str, txid: str, vout: int) -> Select[Deposit]:
    return select(Deposit).where(Deposit.chain == chain, Deposit.txid == txid, Deposit.vout == vout)
