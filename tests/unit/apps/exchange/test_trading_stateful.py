"""Hypothesis stateful test of engine + ledger: random limit/IOC/post-only/market orders,
cancels (own and others'), deposits, freezes and restarts. After every step: the audit is
clean (per-asset sums zero, no negative member balance, reserved <= balance, running totals =
postings), every order holds exactly what it can still cost, fees collected = fees in the
trades, member holdings + fees = deposits, and the book rebuilt from the database equals the
book in memory. Bounded for CI."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.db import Base
from scnode_exchange.ledger import AZC, FEES, NODE_WALLET, SATS, AssetSpec, Ledger, verify
from scnode_exchange.ledger.models import Account
from scnode_exchange.matching import Fill, MarketSpec, OrderType, Side, TimeInForce
from scnode_exchange.trading.models import Trade
from scnode_exchange.trading.service import (
    Exchange,
    OrderNotFoundError,
    book_from_db,
    verify_orders,
)

MARKETS = (
    MarketSpec("AZC/SATS", AZC, SATS, lot_size=1_000, tick=5, maker_fee_bps=10, taker_fee_bps=25),
    MarketSpec(
        "MICRO/SATS", "MICRO", SATS, lot_size=100, tick=1, maker_fee_bps=0, taker_fee_bps=30
    ),
)
ASSETS = (SATS, AZC, "MICRO")
_handles = itertools.count()


def _empty_database(sessions: sessionmaker[Session]) -> None:
    """Each example starts from an empty exchange, so replays see the same state."""
    with sessions.begin() as s:
        for table in reversed(Base.metadata.sorted_tables):
            s.execute(table.delete())
        Ledger(s).ensure_assets([AssetSpec("MICRO", "Test microcurrency", 8, "musat")])


def _machine(sessions: sessionmaker[Session]) -> type[RuleBasedStateMachine]:
    class TradingMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            _empty_database(sessions)
            self.exchange = Exchange(sessions, MARKETS)
            self.members: list[int] = []
            self.orders: list[tuple[int, int]] = []  # (member, order id) ever placed
            self.fills = 0

        @initialize()
        def members_deposit(self) -> None:
            with sessions.begin() as s:
                ledger = Ledger(s)
                for _ in range(3):
                    member = ledger.create_member(f"t{next(_handles)}")
                    self.members.append(member.id)
                    for asset, amount in ((SATS, 200_000), (AZC, 200_000), ("MICRO", 20_000)):
                        self._deposit(ledger, member.id, asset, amount)

        def _deposit(self, ledger: Ledger, member: int, asset: str, amount: int) -> None:
            ledger.transfer(
                "deposit", "d", ledger.system_account(NODE_WALLET, asset),
                ledger.member_account(member, asset), amount,
            )  # fmt: skip

        @rule(
            who=st.integers(0, 2),
            market=st.sampled_from(MARKETS),
            side=st.sampled_from([Side.BUY, Side.SELL]),
            ticks=st.integers(-2, 2),
            qty=st.integers(1, 60),
            kind=st.sampled_from([OrderType.LIMIT, OrderType.LIMIT, OrderType.MARKET]),
            tif=st.sampled_from(list(TimeInForce)),
        )
        def place(
            self, who: int, market: MarketSpec, side: Side, ticks: int, qty: int,
            kind: OrderType, tif: TimeInForce,
        ) -> None:  # fmt: skip
            price = (100 + ticks) * market.tick
            member = self.members[who]
            result = self.exchange.place_order(member, market.symbol, side, price, qty, kind, tif)
            self.orders.append((member, result.order_id))
            self.fills += sum(isinstance(e, Fill) for e in result.events)

        @rule(who=st.integers(0, 2), market=st.sampled_from(MARKETS), qty=st.integers(1, 80),
              tif=st.sampled_from([TimeInForce.GTC, TimeInForce.IOC]))  # fmt: skip
        def take(self, who: int, market: MarketSpec, qty: int, tif: TimeInForce) -> None:
            """Trade against the best resting price, so fills happen often."""
            book = self.exchange.books[market.symbol]
            ask, bid = book.best_ask(), book.best_bid()
            if ask is not None:
                side, price = Side.BUY, ask
            elif bid is not None:
                side, price = Side.SELL, bid
            else:
                return
            member = self.members[who]
            result = self.exchange.place_order(member, market.symbol, side, price, qty, tif=tif)
            self.orders.append((member, result.order_id))
            self.fills += sum(isinstance(e, Fill) for e in result.events)

        @precondition(lambda self: bool(self.orders))
        @rule(pick=st.integers(0, 10_000), who=st.integers(0, 2))
        def cancel(self, pick: int, who: int) -> None:
            owner, order_id = self.orders[pick % len(self.orders)]
            caller = self.members[who]
            book_has_it = any(order_id in book for book in self.exchange.books.values())
            try:
                self.exchange.cancel_order(caller, order_id)
            except OrderNotFoundError:
                assert caller != owner or not book_has_it
                return
            assert caller == owner and book_has_it

        @rule(who=st.integers(0, 2), asset=st.sampled_from(ASSETS), amount=st.integers(1, 9999))
        def deposit(self, who: int, asset: str, amount: int) -> None:
            with sessions.begin() as s:
                self._deposit(Ledger(s), self.members[who], asset, amount)

        @rule(who=st.integers(0, 2), frozen=st.booleans())
        def freeze(self, who: int, frozen: bool) -> None:
            with sessions.begin() as s:
                ledger = Ledger(s)
                if frozen:
                    ledger.freeze(self.members[who], "test")
                else:
                    ledger.unfreeze(self.members[who])

        def teardown(self) -> None:
            print("FILLS", self.fills, len(self.orders))

        @rule()
        def restart(self) -> None:
            restarted = Exchange(sessions, MARKETS)
            for symbol, book in self.exchange.books.items():
                assert restarted.books[symbol].snapshot() == book.snapshot()
                assert restarted.books[symbol].next_seq == book.next_seq
            self.exchange = restarted

        @invariant()
        def books_and_ledger_agree(self) -> None:
            with sessions.begin() as s:
                report = verify(s)
                assert report.problems == []
                assert set(report.per_asset_sum.values()) <= {0}
                assert verify_orders(s, MARKETS) == []
                ledger = Ledger(s)
                for spec in MARKETS:
                    base_fees = s.scalar(
                        select(func.coalesce(func.sum(Trade.buyer_fee), 0)).where(
                            Trade.market == spec.symbol
                        )
                    )
                    assert ledger.system_account(FEES, spec.base).balance == base_fees
                assert ledger.system_account(FEES, SATS).balance == s.scalar(
                    select(func.coalesce(func.sum(Trade.seller_fee), 0))
                )
                for asset in ASSETS:
                    members_hold = s.scalar(
                        select(func.coalesce(func.sum(Account.balance), 0)).where(
                            Account.asset == asset, Account.member_id.is_not(None)
                        )
                    )
                    fees = ledger.system_account(FEES, asset).balance
                    wallet = ledger.system_account(NODE_WALLET, asset).balance
                    assert (members_hold or 0) + fees == -wallet
                for symbol, book in self.exchange.books.items():
                    stored = book_from_db(s, self.exchange.markets[symbol], book.next_seq)
                    assert stored.snapshot() == book.snapshot()
                    bid, ask = book.best_bid(), book.best_ask()
                    assert bid is None or ask is None or bid < ask

    return TradingMachine


def test_engine_and_ledger_invariants_under_random_trading(
    sessions: sessionmaker[Session],
) -> None:
    run_state_machine_as_test(
        _machine(sessions),
        settings=settings(
            # PostgreSQL round trips cost more: fewer examples keep the file well under 60 s
            max_examples=15 if sessions.kw["bind"].dialect.name == "sqlite" else 8,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
