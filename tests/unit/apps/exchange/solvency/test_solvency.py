"""The solvency check on SQLite and PostgreSQL: a normal life cycle (deposit pending and
credited, trades with fees, a withdrawal reserved, being sent, broadcast, confirmed, and one
refused) never alerts; a wallet drained behind the exchange's back and a reorg whose amount
the member had already spent alert once, stay one alert while the shortfall lasts (also
across a restart), and clear when the wallet is topped up. The wallet figure here is what
the chain API would answer (``trusted_sats``) — the test keeps it like the wallet would."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.deposits.service import ChainDepositConfig, DepositService, Observation
from scnode_exchange.ledger import SATS, Ledger
from scnode_exchange.matching import MarketSpec, Side
from scnode_exchange.solvency import SolvencyMetrics, SolvencyService
from scnode_exchange.solvency.service import SolvencyReport
from scnode_exchange.trading.service import Exchange
from scnode_exchange.withdrawals import WithdrawalPolicy, WithdrawalService
from tests.unit.apps.exchange.withdrawals.helpers import address

N = 3
MARKET = MarketSpec("AZC/SATS", "AZC", SATS, lot_size=1_000, tick=5, maker_fee_bps=10,
                    taker_fee_bps=25)  # fmt: skip
POLICY = WithdrawalPolicy(asset=SATS, hrp="bcrt", flat_fee=500, confirmations=2)


@dataclass
class Node:
    """The exchange's services over one database and a model of the node's wallet."""

    sessions: sessionmaker[Session]
    confirm_checks: int = 1
    wallet: int = 0  # trusted balance, as the chain API reports it
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.deposits = DepositService(self.sessions, {"bitcoin": ChainDepositConfig(SATS, N)})
        self.withdrawals = WithdrawalService(self.sessions, {"bitcoin": POLICY})
        self.metrics = SolvencyMetrics(self.registry)
        self.restart()
        with self.sessions.begin() as session:
            ledger = Ledger(session)
            self.alice = ledger.create_member("alice").id
            self.bob = ledger.create_member("bob").id
        self.deposits.record_address(self.alice, "bitcoin", "bcrt1qalice")
        self.deposits.record_address(self.bob, "bitcoin", "bcrt1qbob")

    def restart(self) -> None:
        self.solvency = SolvencyService(
            self.sessions, {"bitcoin": SATS}, confirm_checks=self.confirm_checks,
            metrics=self.metrics,
        )  # fmt: skip

    def check(self) -> tuple[SolvencyReport, list[str], list[str]]:
        report = self.solvency.assess({"bitcoin": self.wallet})
        result = self.solvency.record(report)
        return report, result.raised, result.cleared

    def margin(self) -> int:
        report, raised, _ = self.check()
        assert raised == [], report
        margin = report.assets[SATS].margin
        assert margin is not None
        return margin

    def observe(self, txid: str, who: str, amount: int, confirmations: int) -> None:
        self.deposits.apply(
            [Observation("bitcoin", txid, 0, f"bcrt1q{who}", amount, confirmations,
                         "block" if confirmations > 0 else None, verified=True)]
        )  # fmt: skip

    def metric(self, name: str) -> float | None:
        return self.registry.get_sample_value(name, {"asset": SATS})


@pytest.fixture
def node(sessions: sessionmaker[Session]) -> Node:
    return Node(sessions)


def test_a_normal_life_cycle_never_alerts(node: Node, sessions: sessionmaker[Session]) -> None:
    assert node.margin() == 0
    # a payment to alice's address: unconfirmed it is not in the trusted balance; confirmed
    # but below N it is a surplus (held, owed to nobody yet)
    node.observe("a" * 64, "alice", 1_000_000, 0)
    assert node.margin() == 0
    node.wallet += 1_000_000
    node.observe("a" * 64, "alice", 1_000_000, 1)
    assert node.margin() == 1_000_000
    node.observe("a" * 64, "alice", 1_000_000, N)  # credited: owed now
    node.observe("b" * 64, "bob", 200_000, 0)
    node.wallet += 200_000
    node.observe("b" * 64, "bob", 200_000, N)
    assert node.margin() == 0

    # trades: money moves between members, the fees leave the members' side
    with sessions.begin() as session:
        ledger = Ledger(session)
        ledger.transfer("owner_adjustment", "azc for bob",
                        ledger.system_account("owner_equity", "AZC"),
                        ledger.member_account(node.bob, "AZC"), 50_000)  # fmt: skip
    exchange = Exchange(sessions, [MARKET])
    exchange.place_order(node.bob, MARKET.symbol, Side.SELL, 500, 20)
    exchange.place_order(node.alice, MARKET.symbol, Side.BUY, 500, 8)
    assert node.margin() > 0  # the seller's fee in sats is the exchange's now
    fees = node.margin()

    # a withdrawal: reserved (nothing moves), being sent (the wallet may or may not have paid
    # yet), broadcast (settled), confirmed with the network fee booked
    w = node.withdrawals.request_withdrawal(node.alice, "bitcoin", address(1), 300_000, "k-1")
    assert node.margin() == fees
    assert node.withdrawals.claim_for_sending(w.id) is not None
    assert node.margin() == fees + w.total  # not paid yet: counted as gone already
    node.wallet -= 300_000 + 180  # the wallet paid amount + network fee
    assert node.margin() == fees + w.fee - 180
    node.withdrawals.record_broadcast(w.id, "c" * 64)
    assert node.margin() == fees + w.fee - 180
    node.withdrawals.record_confirmations(w.id, 2, 180)
    assert node.margin() == fees + w.fee - 180

    # a send the wallet refuses: back to the member, nothing changes
    w2 = node.withdrawals.request_withdrawal(node.bob, "bitcoin", address(2), 10_000, "k-2")
    node.withdrawals.claim_for_sending(w2.id)
    node.withdrawals.record_failure(w2.id, "insufficient funds in the node wallet")
    report, raised, cleared = node.check()
    assert (raised, cleared) == ([], [])
    assert report.assets[SATS].margin == fees + w.fee - 180
    assert node.solvency.alerts(include_cleared=True) == []
    assert node.metric("scnode_exchange_solvency_alerts_total") is None
    assert node.metric("scnode_exchange_solvency_margin") == fees + w.fee - 180


def test_a_drained_wallet_alerts_once_and_clears_when_refilled(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    node = Node(sessions, confirm_checks=2)
    node.wallet = 500_000
    node.observe("a" * 64, "alice", 500_000, N)
    assert node.margin() == 0
    node.wallet -= 120_000  # sendtoaddress behind the exchange's back
    with caplog.at_level(logging.WARNING, "scnode_exchange.solvency"):
        report, raised, _ = node.check()
        assert report.assets[SATS].margin == -120_000 and raised == []  # first sighting
        _, raised, _ = node.check()
        assert raised == [SATS]
        node.wallet -= 30_000
        for _ in range(3):
            _, raised, _ = node.check()
            assert raised == []
    alerts = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(alerts) == 1 and alerts[0].getMessage().startswith("ALERT solvency of SATS")
    (alert,) = node.solvency.alerts()
    assert (alert.shortfall, alert.worst_shortfall, alert.last_shortfall) == (
        120_000, 150_000, 150_000,
    )  # fmt: skip
    assert (alert.holdings, alert.liabilities) == (380_000, 500_000)
    assert node.metric("scnode_exchange_solvency_alerts_total") == 1
    assert node.metric("scnode_exchange_solvency_alert") == 1

    node.restart()  # a restart neither raises the open alert again nor forgets it
    _, raised, _ = node.check()
    assert raised == [] and node.solvency.open_alert_assets() == {SATS}

    node.wallet += 150_000  # the owner tops the wallet up
    _, raised, cleared = node.check()
    assert (raised, cleared) == ([], [SATS])
    assert node.solvency.alerts() == []
    (done,) = node.solvency.alerts(include_cleared=True)
    assert done.cleared_at is not None and done.cleared_margin == 0
    assert node.metric("scnode_exchange_solvency_alert") == 0

    node.wallet -= 1  # a new shortfall is a new alert
    node.check()
    _, raised, _ = node.check()
    assert raised == [SATS]
    assert len(node.solvency.alerts(include_cleared=True)) == 2
    assert node.metric("scnode_exchange_solvency_alerts_total") == 2


def test_a_short_dip_below_confirm_checks_never_alerts(sessions: sessionmaker[Session]) -> None:
    node = Node(sessions, confirm_checks=3)
    node.wallet = 10_000
    node.observe("a" * 64, "alice", 10_000, N)
    for dip in (True, True, False, True, True, False):
        node.wallet = 9_000 if dip else 10_000
        _, raised, _ = node.check()
        assert raised == []
    assert node.solvency.alerts(include_cleared=True) == []


def test_reorg_after_credit_of_spent_funds_alerts_and_a_refill_clears(
    node: Node, sessions: sessionmaker[Session]
) -> None:
    node.wallet = 100_000
    node.observe("a" * 64, "alice", 100_000, N)
    with sessions.begin() as session:  # alice pays bob 70k inside the exchange
        ledger = Ledger(session)
        ledger.transfer("transfer", "t", ledger.member_account(node.alice, SATS),
                        ledger.member_account(node.bob, SATS), 70_000)  # fmt: skip
    assert node.margin() == 0
    # the deposit's block is reorged away: the wallet loses it, the ledger takes back the 30k
    # alice still has and books 70k owed by her: bob's 70k are no longer covered
    node.wallet -= 100_000
    node.observe("a" * 64, "alice", 100_000, -1)
    report, raised, _ = node.check()
    assert raised == [SATS] and report.assets[SATS].margin == -70_000
    (alert,) = node.deposits.alerts()
    node.deposits.resolve_alert(alert.id, action="write_off", actor="owner", reason="gone")
    _, raised, cleared = node.check()
    assert (raised, cleared) == ([], [])  # a write-off does not bring coins back
    node.wallet += 70_000  # the owner covers the loss
    _, raised, cleared = node.check()
    assert cleared == [SATS]


def test_reorg_after_credit_of_unspent_funds_does_not_alert(node: Node) -> None:
    node.wallet = 100_000
    node.observe("a" * 64, "alice", 100_000, N)
    node.wallet -= 100_000
    node.observe("a" * 64, "alice", 100_000, -1)  # all taken back from alice: no debt
    assert node.margin() == 0


def test_an_unreadable_wallet_decides_nothing(node: Node) -> None:
    node.wallet = 5_000
    node.observe("a" * 64, "alice", 10_000, N)
    node.check()
    assert node.solvency.open_alert_assets() == {SATS}
    report = node.solvency.assess({"bitcoin": None}, {"bitcoin": "HTTP 503"})
    assert report.assets[SATS].margin is None
    assert report.assets[SATS].error == "bitcoin: HTTP 503"
    assert report.to_json()["solvent"] is None
    result = node.solvency.record(report)
    assert (result.raised, result.cleared) == ([], [])
    assert node.solvency.open_alert_assets() == {SATS}


def test_a_lightning_payment_being_sent_is_no_shortfall(
    node: Node, sessions: sessionmaker[Session]
) -> None:
    """The channel has paid (the holding dropped) while the member's hold is still in their
    balance: the payment in ``sending`` counts as in flight, as a withdrawal being sent does."""
    from scnode_exchange.lightning.models import LightningPayment

    node.wallet = 100_000
    node.observe("a" * 64, "alice", 100_000, N)
    assert node.margin() == 0
    with sessions.begin() as session:
        session.add(
            LightningPayment(
                member_id=node.alice, idempotency_key="k1", kind="external", state="sending",
                bolt11="lnbcrt400u1x", payment_hash="b" * 64, amount_msat=40_000_000,
                amount_sats=40_000, max_fee_sats=1_000, send_key="lnpay-000001",
            )
        )  # fmt: skip
    node.wallet = 100_000 - 40_000 - 300  # paid, at a 300 sat routing fee
    assert node.margin() == 700  # the reserve not yet charged: released when it settles
    for _ in range(3):
        _, raised, _ = node.check()
        assert raised == []
