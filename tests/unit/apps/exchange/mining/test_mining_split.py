"""The pure split: exact integer parts, proportional to work, whatever the input."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scnode_exchange.mining.split import SplitInputError, owner_fee, split_payout

work_value = st.one_of(
    st.integers(min_value=0, max_value=10**15),
    st.floats(min_value=0, max_value=1e15, allow_nan=False, allow_infinity=False),
)
work_maps = st.dictionaries(st.integers(1, 50), work_value, max_size=12)
amounts = st.integers(min_value=1, max_value=21 * 10**14)
fees = st.integers(min_value=0, max_value=10_000)


@given(amounts, fees, work_maps, work_value)
def test_parts_sum_exactly_and_are_fair(
    amount: int, fee_bps: int, work: dict[int, float], unknown: float
) -> None:
    split = split_payout(amount, fee_bps, work, unknown)
    assert split.total() == amount
    assert split.fee == owner_fee(amount, fee_bps)
    parts = [split.fee, split.unattributed, split.remainder, *split.members.values()]
    assert all(type(p) is int and p >= 0 for p in parts)
    assert set(split.members) == set(work)
    total = sum((Fraction(w) for w in work.values()), Fraction(0)) + Fraction(unknown)
    distributable = amount - split.fee
    for member, w in work.items():
        if w == 0:
            assert split.members[member] == 0
        else:
            # floor of the exact proportional share: below it by less than one unit
            exact = distributable * Fraction(w) / total
            assert 0 <= exact - split.members[member] < 1
    if total:
        # the remainder is only what the floors left: less than one unit per recipient
        assert split.remainder < len(work) + 1
    else:
        assert split.remainder == distributable
    if unknown == 0:
        assert split.unattributed == 0


@given(amounts, fees, work_maps)
def test_split_does_not_depend_on_worker_order(
    amount: int, fee_bps: int, work: dict[int, float]
) -> None:
    forward = split_payout(amount, fee_bps, work)
    backward = split_payout(amount, fee_bps, dict(reversed(list(work.items()))))
    assert forward == backward


def test_worked_example() -> None:
    # 1,000,000 sats, 1 % fee, alice 3 parts, bob 1 part, an unknown worker 1 part
    split = split_payout(1_000_000, 100, {1: 3.0, 2: 1.0}, 1.0)
    assert split.fee == 10_000
    assert split.members == {1: 594_000, 2: 198_000}
    assert split.unattributed == 198_000
    assert split.remainder == 0


def test_remainder_of_integer_division() -> None:
    split = split_payout(100, 0, {1: 1, 2: 1, 3: 1})
    assert split.members == {1: 33, 2: 33, 3: 33}
    assert split.remainder == 1


def test_fee_rounds_up_and_may_take_everything() -> None:
    assert owner_fee(1, 1) == 1
    assert owner_fee(10_001, 1) == 2
    split = split_payout(5, 10_000, {1: 1.0})
    assert (split.fee, split.members[1], split.remainder) == (5, 0, 0)


def test_no_work_goes_to_the_pool_account() -> None:
    split = split_payout(1000, 100, {1: 0, 2: 0.0})
    assert split.members == {1: 0, 2: 0}
    assert split.remainder == 990


@pytest.mark.parametrize(
    ("amount", "fee_bps", "work"),
    [
        (0, 0, {1: 1}),
        (-5, 0, {1: 1}),
        (1.5, 0, {1: 1}),
        (10, -1, {1: 1}),
        (10, 10_001, {1: 1}),
        (10, 0, {1: -1}),
        (10, 0, {1: float("nan")}),
        (10, 0, {1: float("inf")}),
        (10, 0, {1: "5"}),
        (10, 0, {1: True}),
    ],
)
def test_bad_input_is_refused(amount: object, fee_bps: object, work: object) -> None:
    with pytest.raises(SplitInputError):
        split_payout(amount, fee_bps, work)  # type: ignore[arg-type]
