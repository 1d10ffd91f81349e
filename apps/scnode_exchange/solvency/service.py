"""The solvency check: per asset, what the node holds against what it owes its members.

Holdings (what is really there):

* ``wallet`` — the **trusted** balance of every chain wallet booked in the asset, read from
  the chain API (confirmed outputs plus the wallet's own unconfirmed change). Unconfirmed
  payments from others and immature coinbases are left out: they may still vanish. Lightning
  (channel balances) joins SATS with the Lightning issue.
* ``in_flight`` — ``amount + fee`` of every withdrawal in ``sending``: its payment may already
  have left the wallet while its hold is still in the member's balance (the ledger settles it
  only when the txid is recorded). Counting it as paid keeps that short window from looking
  like a shortfall; a withdrawal whose send is refused goes back to the member and out of
  this figure in the same transaction. Members' Lightning payments in ``sending`` count the
  same way for SATS (``amount + max_fee``: the channel may already have paid them while the
  hold is still in the member's balance; a stuck HTLC can keep them there for hours).

Liabilities (what members are owed): the sum of the member accounts' balances. A balance
already contains its holds (open orders and withdrawals not yet sent), so they are not added
again. Deposits not yet credited are no liability (the wallet may well hold them: a surplus
until they are credited); the exchange's own accounts (fees, mining pool, suspense, owner
equity and receivable) are the owner's, not the members'.

``margin = wallet + in_flight - member balances``. A shortfall is ``margin < 0``.

The wallet is read **before** the database: everything that takes money out of the wallet is
written to the database first (``sending`` is committed before the send), and everything
that puts a liability into the database needs the money in the wallet first (a deposit is
credited after N confirmations, long after the wallet counts it), so a check never sees the
effect without its cause. What is left (a reorg that removes a credited deposit, seen by the
wallet a moment before the deposit watcher reverses it) is bridged by ``confirm_checks``: an
alert is raised only when that many checks in a row saw the shortfall.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.deposits.models import Deposit
from scnode_exchange.ledger import NODE_WALLET, Account
from scnode_exchange.ledger.models import utcnow
from scnode_exchange.ledger.service import SATS
from scnode_exchange.lightning.models import LightningPayment
from scnode_exchange.solvency.models import SolvencyAlert
from scnode_exchange.withdrawals.models import (
    APPROVED,
    AWAITING_APPROVAL,
    REQUESTED,
    RESERVED,
    SENDING,
    Withdrawal,
)

log = logging.getLogger(__name__)

NOT_YET_SENT = (REQUESTED, RESERVED, AWAITING_APPROVAL, APPROVED)


class SolvencyMetrics:
    """Prometheus series of the check (on the app's registry, or an own one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.margin = Gauge(
            "scnode_exchange_solvency_margin",
            "Node holdings minus member liabilities (base units; below 0 is a shortfall)",
            ["asset"],
            registry=self.registry,
        )
        self.alert = Gauge(
            "scnode_exchange_solvency_alert",
            "1 while a solvency alert is open",
            ["asset"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "scnode_exchange_solvency_alerts",
            "Solvency alerts raised (holdings below member liabilities)",
            ["asset"],
            registry=self.registry,
        )
        self.checks = Counter(
            "scnode_exchange_solvency_checks",
            "Solvency checks by result (ok, shortfall, unknown: a wallet could not be read)",
            ["asset", "result"],
            registry=self.registry,
        )


@dataclass(frozen=True)
class AssetSolvency:
    """One asset's figures of one check (base units). ``wallet`` is None when a wallet of the
    asset could not be read: then nothing is known and nothing is decided."""

    asset: str
    wallet: int | None
    in_flight: int
    member_balances: int
    reserved: int
    pending_withdrawals: int
    pending_deposits: int
    ledger_wallet: int
    chains: tuple[str, ...] = ()
    error: str | None = None

    @property
    def holdings(self) -> int | None:
        return None if self.wallet is None else self.wallet + self.in_flight

    @property
    def liabilities(self) -> int:
        return self.member_balances

    @property
    def margin(self) -> int | None:
        holdings = self.holdings
        return None if holdings is None else holdings - self.liabilities

    def to_json(self) -> dict[str, Any]:
        margin = self.margin
        return {
            "asset": self.asset,
            "chains": list(self.chains),
            "holdings": self.holdings,
            "wallet": self.wallet,
            "in_flight_withdrawals": self.in_flight,
            "liabilities": self.liabilities,
            "member_balances": self.member_balances,
            "reserved": self.reserved,
            "pending_withdrawals": self.pending_withdrawals,
            "pending_deposits": self.pending_deposits,
            "ledger_wallet": self.ledger_wallet,
            "margin": margin,
            "status": "unknown" if margin is None else ("ok" if margin >= 0 else "shortfall"),
            "error": self.error,
        }


@dataclass(frozen=True)
class SolvencyReport:
    checked_at: datetime
    assets: dict[str, AssetSolvency]

    def to_json(self) -> dict[str, Any]:
        margins = [a.margin for a in self.assets.values()]
        solvent: bool | None = True
        if any(m is not None and m < 0 for m in margins):
            solvent = False
        elif any(m is None for m in margins):
            solvent = None  # a wallet could not be read: not known
        return {
            "checked_at": self.checked_at.isoformat(),
            "solvent": solvent,
            "assets": [self.assets[k].to_json() for k in sorted(self.assets)],
        }


@dataclass(frozen=True)
class AlertView:
    id: int
    asset: str
    shortfall: int
    holdings: int
    liabilities: int
    worst_shortfall: int
    last_shortfall: int
    detail: str
    opened_at: datetime
    updated_at: datetime
    cleared_at: datetime | None
    cleared_margin: int | None

    @classmethod
    def of(cls, row: SolvencyAlert) -> AlertView:
        return cls(
            row.id,
            row.asset,
            row.shortfall,
            row.holdings,
            row.liabilities,
            row.worst_shortfall,
            row.last_shortfall,
            row.detail,
            row.opened_at,
            row.updated_at,
            row.cleared_at,
            row.cleared_margin,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "asset": self.asset,
            "open": self.cleared_at is None,
            "shortfall": self.shortfall,
            "holdings": self.holdings,
            "liabilities": self.liabilities,
            "worst_shortfall": self.worst_shortfall,
            "last_shortfall": self.last_shortfall,
            "detail": self.detail,
            "opened_at": self.opened_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "cleared_at": self.cleared_at.isoformat() if self.cleared_at else None,
            "cleared_margin": self.cleared_margin,
        }


@dataclass
class RecordResult:
    """What one ``record`` changed: assets whose alert was raised or cleared."""

    raised: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)


class SolvencyService:
    """The database side of the check: figures (``assess``) and alert state (``record``).

    ``chain_assets`` maps each chain whose wallet is read to its ledger asset (bitcoin →
    SATS, azcoin → AZC); assets with no chain are not checked (no holdings to compare).
    The alert state is in the database (one writer: the periodic task), so a restart neither
    raises an open alert again nor forgets one; the count of checks in a row that saw a
    shortfall is kept in memory only (a restart starts it again).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        chain_assets: Mapping[str, str],
        *,
        confirm_checks: int = 2,
        metrics: SolvencyMetrics | None = None,
    ) -> None:
        if confirm_checks < 1:
            raise ValueError("confirm_checks must be at least 1")
        self.sessions = sessions
        self.chain_assets = dict(chain_assets)
        self.confirm_checks = confirm_checks
        self.metrics = metrics or SolvencyMetrics()
        self._streak: dict[str, int] = {}

    @property
    def assets(self) -> list[str]:
        return sorted(set(self.chain_assets.values()))

    def chains_of(self, asset: str) -> tuple[str, ...]:
        return tuple(sorted(c for c, a in self.chain_assets.items() if a == asset))

    # -- figures -----------------------------------------------------------------------------
    def assess(
        self,
        wallets: Mapping[str, int | None],
        errors: Mapping[str, str] | None = None,
        assets: Iterable[str] | None = None,
    ) -> SolvencyReport:
        """The figures of every checked asset, given each chain's trusted wallet balance
        (None: not readable). Read the wallets BEFORE calling this (see the module doc)."""
        errors = errors or {}
        wanted = sorted(set(assets) if assets is not None else self.assets)
        with self.sessions() as session:
            members = {
                str(asset): (int(balance or 0), int(reserved or 0))
                for asset, balance, reserved in session.execute(
                    select(Account.asset, func.sum(Account.balance), func.sum(Account.reserved))
                    .where(Account.member_id.is_not(None))
                    .group_by(Account.asset)
                )
            }
            node_wallet = {
                str(asset): int(balance)
                for asset, balance in session.execute(
                    select(Account.asset, Account.balance).where(Account.system_name == NODE_WALLET)
                )
            }
            in_flight = _sum_by_asset(
                session,
                select(Withdrawal.asset, func.sum(Withdrawal.amount + Withdrawal.fee))
                .where(Withdrawal.state == SENDING)
                .group_by(Withdrawal.asset),
            )
            paying = session.scalar(
                select(
                    func.sum(LightningPayment.amount_sats + LightningPayment.max_fee_sats)
                ).where(LightningPayment.state == "sending")
            )
            if paying:
                in_flight[SATS] = in_flight.get(SATS, 0) + int(paying)
            not_sent = _sum_by_asset(
                session,
                select(Withdrawal.asset, func.sum(Withdrawal.amount + Withdrawal.fee))
                .where(Withdrawal.state.in_(NOT_YET_SENT))
                .group_by(Withdrawal.asset),
            )
            pending_deposits = _sum_by_asset(
                session,
                select(Deposit.asset, func.sum(Deposit.amount))
                .where(Deposit.state == "pending")
                .group_by(Deposit.asset),
            )
        report: dict[str, AssetSolvency] = {}
        for asset in wanted:
            chains = self.chains_of(asset)
            balances = [wallets.get(c) for c in chains]
            unread = [c for c, b in zip(chains, balances, strict=True) if b is None]
            wallet = None if unread or not chains else sum(b for b in balances if b is not None)
            error = "; ".join(f"{c}: {errors.get(c, 'not read')}" for c in unread) or None
            if not chains:
                error = "no wallet holds this asset"
            balance, reserved = members.get(asset, (0, 0))
            report[asset] = AssetSolvency(
                asset=asset,
                wallet=wallet,
                in_flight=in_flight.get(asset, 0),
                member_balances=balance,
                reserved=reserved,
                pending_withdrawals=not_sent.get(asset, 0),
                pending_deposits=pending_deposits.get(asset, 0),
                ledger_wallet=-node_wallet.get(asset, 0),
                chains=chains,
                error=error,
            )
        return SolvencyReport(utcnow(), report)

    # -- alert state -------------------------------------------------------------------------
    def record(self, report: SolvencyReport) -> RecordResult:
        """Update the alerts from a report: raise one (row, ERROR log line, counter) when a
        shortfall was seen ``confirm_checks`` times in a row and none is open; keep an open
        one up to date while the shortfall lasts; clear it when the margin is back >= 0. An
        asset whose wallet could not be read changes nothing."""
        result = RecordResult()
        with self.sessions.begin() as session:
            open_rows = {
                row.asset: row
                for row in session.scalars(
                    select(SolvencyAlert)
                    .where(SolvencyAlert.cleared_at.is_(None))
                    .order_by(SolvencyAlert.id)
                    .with_for_update()
                )
            }
            for asset, figures in sorted(report.assets.items()):
                margin = figures.margin
                row = open_rows.get(asset)
                if margin is None:
                    self.metrics.checks.labels(asset, "unknown").inc()
                    continue
                self.metrics.margin.labels(asset).set(margin)
                if margin >= 0:
                    self.metrics.checks.labels(asset, "ok").inc()
                    self._streak[asset] = 0
                    if row is not None:
                        row.cleared_at = report.checked_at
                        row.cleared_margin = margin
                        row.updated_at = report.checked_at
                        result.cleared.append(asset)
                        log.warning(
                            "solvency of %s restored: holdings %d >= liabilities %d "
                            "(alert %d cleared, worst shortfall %d)",
                            asset,
                            figures.holdings,
                            figures.liabilities,
                            row.id,
                            row.worst_shortfall,
                        )
                    self.metrics.alert.labels(asset).set(0)
                    continue
                self.metrics.checks.labels(asset, "shortfall").inc()
                shortfall = -margin
                self._streak[asset] = self._streak.get(asset, 0) + 1
                if row is not None:
                    row.last_shortfall = shortfall
                    row.worst_shortfall = max(row.worst_shortfall, shortfall)
                    row.updated_at = report.checked_at
                    self.metrics.alert.labels(asset).set(1)
                    continue
                if self._streak[asset] < self.confirm_checks:
                    log.warning(
                        "%s: holdings %d below liabilities %d (check %d of %d before alerting)",
                        asset,
                        figures.holdings,
                        figures.liabilities,
                        self._streak[asset],
                        self.confirm_checks,
                    )
                    continue
                detail = _detail(figures)
                row = SolvencyAlert(
                    asset=asset,
                    shortfall=shortfall,
                    holdings=figures.holdings or 0,
                    liabilities=figures.liabilities,
                    worst_shortfall=shortfall,
                    last_shortfall=shortfall,
                    detail=detail,
                    opened_at=report.checked_at,
                    updated_at=report.checked_at,
                )
                session.add(row)
                session.flush()
                result.raised.append(asset)
                self.metrics.alerts.labels(asset).inc()
                self.metrics.alert.labels(asset).set(1)
                log.error(
                    "ALERT solvency of %s: the node holds %d, members are owed %d: "
                    "shortfall %d (alert %d; %s)",
                    asset,
                    figures.holdings,
                    figures.liabilities,
                    shortfall,
                    row.id,
                    detail,
                )
        return result

    def alerts(self, *, include_cleared: bool = False, limit: int = 50) -> list[AlertView]:
        """Open alerts (and, with ``include_cleared``, the latest cleared ones), newest first."""
        query = select(SolvencyAlert).order_by(SolvencyAlert.id.desc()).limit(limit)
        if not include_cleared:
            query = query.where(SolvencyAlert.cleared_at.is_(None))
        with self.sessions() as session:
            return [AlertView.of(row) for row in session.scalars(query)]

    def open_alert_assets(self) -> set[str]:
        with self.sessions() as session:
            return set(
                session.scalars(
                    select(SolvencyAlert.asset).where(SolvencyAlert.cleared_at.is_(None))
                )
            )


def _sum_by_asset(session: Session, query: Any) -> dict[str, int]:
    return {str(asset): int(total or 0) for asset, total in session.execute(query)}


def _detail(figures: AssetSolvency) -> str:
    return (
        f"wallet {figures.wallet} ({', '.join(figures.chains)}) + withdrawals being sent "
        f"{figures.in_flight} < member balances {figures.member_balances} "
        f"(of which reserved {figures.reserved}); the ledger expects the wallet to hold "
        f"{figures.ledger_wallet}, pending deposits {figures.pending_deposits}"
    )
