"""Audit: recompute every balance from the postings and holds and check the ledger's rules."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scnode_exchange.ledger.models import Account, Hold, Posting


@dataclass
class AuditReport:
    """What ``verify()`` found; ``ok`` when ``problems`` is empty."""

    accounts: int = 0
    postings: int = 0
    per_asset_sum: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every rule holds."""
        return not self.problems


def verify(session: Session) -> AuditReport:
    """Recompute balances from postings and reserved amounts from open holds, and check:

    * per asset, the sum over all accounts is zero;
    * no member balance is below zero, and 0 <= reserved <= balance for members;
    * the running totals stored on each account equal the recomputed sums;
    * closed holds have nothing remaining.

    Reads only; run it in its own transaction for a consistent snapshot.
    """
    report = AuditReport()
    posted = {
        row[0]: int(row[1])
        for row in session.execute(
            select(Posting.account_id, func.sum(Posting.amount)).group_by(Posting.account_id)
        )
    }
    held = {
        row[0]: int(row[1])
        for row in session.execute(
            select(Hold.account_id, func.sum(Hold.remaining))
            .where(Hold.is_open.is_(True))
            .group_by(Hold.account_id)
        )
    }
    report.postings = session.scalar(select(func.count(Posting.id))) or 0
    closed_with_rest = session.scalar(
        select(func.count(Hold.id)).where(Hold.is_open.is_(False), Hold.remaining != 0)
    )
    if closed_with_rest:
        report.problems.append(f"{closed_with_rest} closed holds still have an amount remaining")
    for account in session.scalars(select(Account).order_by(Account.id)):
        report.accounts += 1
        balance = posted.get(account.id, 0)
        reserved = held.get(account.id, 0)
        report.per_asset_sum[account.asset] = report.per_asset_sum.get(account.asset, 0) + balance
        name = f"account {account.id} ({account.asset}, " + (
            f"member {account.member_id})" if account.is_member else f"{account.system_name})"
        )
        if balance != account.balance:
            report.problems.append(
                f"{name}: running balance {account.balance} != postings {balance}"
            )
        if reserved != account.reserved:
            report.problems.append(
                f"{name}: running reserved {account.reserved} != holds {reserved}"
            )
        if account.is_member:
            if balance < 0:
                report.problems.append(f"{name}: negative balance {balance}")
            if not 0 <= reserved <= balance:
                report.problems.append(f"{name}: reserved {reserved} outside 0..{balance}")
        elif reserved:
            report.problems.append(f"{name}: system account with holds")
    for asset, total in report.per_asset_sum.items():
        if total != 0:
            report.problems.append(f"{asset}: accounts sum to {total}, not 0")
    return report
