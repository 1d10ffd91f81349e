"""Hypothesis stateful test of the ledger: random deposits, withdrawals, transfers, holds,
releases, settlements, freezes and attempted overdrafts, checked against a plain model and the
audit after every step. Bounded for CI; ``benchmarks/`` is where long runs belong."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.ledger import (
    AZC,
    NODE_WALLET,
    SATS,
    HoldClosedError,
    InsufficientFundsError,
    Ledger,
    MemberFrozenError,
    verify,
)

ASSETS = (SATS, AZC)
amounts = st.integers(min_value=1, max_value=5_000)
_handles = itertools.count()


def _ledger_machine(sessions: sessionmaker[Session]) -> type[RuleBasedStateMachine]:
    class LedgerMachine(RuleBasedStateMachine):
        holds = Bundle("holds")

        def __init__(self) -> None:
            super().__init__()
            self.members: list[int] = []
            self.balance: dict[tuple[int, str], int] = {}
            self.reserved: dict[tuple[int, str], int] = {}
            self.hold_left: dict[int, tuple[int, str, int]] = {}
            self.frozen: set[int] = set()

        @initialize()
        def create_members(self) -> None:
            with sessions.begin() as s:
                ledger = Ledger(s)
                for _ in range(3):
                    member = ledger.create_member(f"m{next(_handles)}")
                    self.members.append(member.id)
                    for asset in ASSETS:
                        self.balance[member.id, asset] = 0
                        self.reserved[member.id, asset] = 0

        def _available(self, key: tuple[int, str]) -> int:
            return self.balance[key] - self.reserved[key]

        @rule(who=st.integers(0, 2), asset=st.sampled_from(ASSETS), amount=amounts)
        def deposit(self, who: int, asset: str, amount: int) -> None:
            member = self.members[who]
            with sessions.begin() as s:
                ledger = Ledger(s)
                ledger.transfer(
                    "deposit", "d", ledger.system_account(NODE_WALLET, asset),
                    ledger.member_account(member, asset), amount,
                )  # fmt: skip
            self.balance[member, asset] += amount

        @rule(who=st.integers(0, 2), asset=st.sampled_from(ASSETS), amount=amounts)
        def withdraw(self, who: int, asset: str, amount: int) -> None:
            member = self.members[who]
            key = (member, asset)
            expect_ok = member not in self.frozen and amount <= self._available(key)
            try:
                with sessions.begin() as s:
                    ledger = Ledger(s)
                    ledger.transfer(
                        "withdrawal", "w", ledger.member_account(member, asset),
                        ledger.system_account(NODE_WALLET, asset), amount,
                    )  # fmt: skip
            except (InsufficientFundsError, MemberFrozenError):
                assert not expect_ok
                return
            assert expect_ok
            self.balance[key] -= amount

        @rule(
            src=st.integers(0, 2), dst=st.integers(0, 2),
            asset=st.sampled_from(ASSETS), amount=amounts,
        )  # fmt: skip
        def transfer(self, src: int, dst: int, asset: str, amount: int) -> None:
            a, b = self.members[src], self.members[dst]
            expect_ok = a not in self.frozen and amount <= self._available((a, asset))
            try:
                with sessions.begin() as s:
                    ledger = Ledger(s)
                    ledger.transfer(
                        "transfer", "t", ledger.member_account(a, asset),
                        ledger.member_account(b, asset), amount,
                    )  # fmt: skip
            except (InsufficientFundsError, MemberFrozenError):
                assert not expect_ok
                return
            assert expect_ok
            self.balance[a, asset] -= amount
            self.balance[b, asset] += amount

        @rule(target=holds, who=st.integers(0, 2), asset=st.sampled_from(ASSETS), amount=amounts)
        def reserve(self, who: int, asset: str, amount: int) -> int:
            member = self.members[who]
            key = (member, asset)
            expect_ok = member not in self.frozen and amount <= self._available(key)
            try:
                with sessions.begin() as s:
                    ledger = Ledger(s)
                    hold_id = ledger.reserve(ledger.member_account(member, asset), amount, "h").id
            except (InsufficientFundsError, MemberFrozenError):
                assert not expect_ok
                return -1
            assert expect_ok
            self.reserved[key] += amount
            self.hold_left[hold_id] = (member, asset, amount)
            return hold_id

        @rule(hold=holds, amount=st.one_of(st.none(), amounts))
        def release(self, hold: int, amount: int | None) -> None:
            state = self.hold_left.get(hold)
            expect_ok = state is not None and (amount is None or amount <= state[2])
            try:
                with sessions.begin() as s:
                    Ledger(s).release(hold, amount)
            except HoldClosedError:
                assert not expect_ok
                return
            assert expect_ok and state is not None
            member, asset, left = state
            taken = left if amount is None else amount
            self.reserved[member, asset] -= taken
            self.hold_left[hold] = (member, asset, left - taken)

        @rule(hold=holds, dst=st.integers(0, 2), amount=amounts)
        def settle(self, hold: int, dst: int, amount: int) -> None:
            state = self.hold_left.get(hold)
            expect_ok = state is not None and amount <= state[2]
            target = self.members[dst]
            try:
                with sessions.begin() as s:
                    ledger = Ledger(s)
                    asset = state[1] if state else SATS
                    ledger.settle(hold, ledger.member_account(target, asset), amount, "trade", "s")
            except HoldClosedError:
                assert not expect_ok
                return
            assert expect_ok and state is not None
            member, asset, left = state
            self.reserved[member, asset] -= amount
            self.balance[member, asset] -= amount
            self.balance[target, asset] += amount
            self.hold_left[hold] = (member, asset, left - amount)

        @rule(who=st.integers(0, 2), frozen=st.booleans())
        def freeze(self, who: int, frozen: bool) -> None:
            member = self.members[who]
            with sessions.begin() as s:
                ledger = Ledger(s)
                if frozen:
                    ledger.freeze(member, "test")
                    self.frozen.add(member)
                else:
                    ledger.unfreeze(member)
                    self.frozen.discard(member)

        @invariant()
        def ledger_matches_model_and_audit(self) -> None:
            if not self.members:
                return
            with sessions.begin() as s:
                report = verify(s)
                ledger = Ledger(s)
                for member in self.members:
                    for asset, (balance, reserved) in ledger.balances(member).items():
                        if asset in ASSETS:
                            assert (balance, reserved) == (
                                self.balance[member, asset],
                                self.reserved[member, asset],
                            )
            assert report.problems == []
            assert all(total == 0 for total in report.per_asset_sum.values())

    return LedgerMachine


def test_ledger_invariants_under_random_operations(sessions: sessionmaker[Session]) -> None:
    run_state_machine_as_test(
        _ledger_machine(sessions),
        settings=settings(
            # PostgreSQL round trips cost more: fewer examples keep the file well under 60 s
            max_examples=15 if sessions.kw["bind"].dialect.name == "sqlite" else 10,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
