"""The payout split as a pure function: integers out, exact rational arithmetic inside.

Scheme (PPLNS-like over the payout's window, normally the period since the previous payout):

1. ``fee = ceil(amount * fee_bps / 10 000)`` goes to the owner (``fees`` account) — rounded in
   the exchange's favour like every other exchange fee.
2. ``distributable = amount - fee``.
3. Work ``W`` = the sum of every worker's upstream-acknowledged difficulty in the window
   (registered and unknown alike). Each member gets ``floor(distributable * W_member / W)``;
   the unknown workers together get ``floor(distributable * W_unknown / W)``, booked to the
   ``suspense`` account (the owner resolves it; nobody is credited silently).
4. What integer division leaves (fewer units than there are recipients) goes to the
   ``mining_pool`` account. With no work at all in the window the whole distributable amount
   goes there.

Difficulty arrives as JSON numbers (floats); each float is turned into an exact ``Fraction``, so
no rounding happens before the single floor per recipient, and the result does not depend on
the order of the workers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

BPS = 10_000

Work = float | int | Fraction


class SplitInputError(ValueError):
    """An amount, fee or work value the split cannot use."""


@dataclass(frozen=True, slots=True)
class Split:
    """The parts of one payout; ``fee + sum(members) + unattributed + remainder == amount``."""

    amount: int
    fee: int
    members: Mapping[int, int]
    unattributed: int
    remainder: int

    def total(self) -> int:
        """Sum of all parts (always ``amount``)."""
        return self.fee + sum(self.members.values()) + self.unattributed + self.remainder


def exact_work(value: Work) -> Fraction:
    """A work value (difficulty) as an exact fraction; refuses negatives, NaN and infinities."""
    if isinstance(value, bool) or not isinstance(value, int | float | Fraction):
        raise SplitInputError(f"work must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SplitInputError(f"work must be finite, got {value!r}")
    if value < 0:
        raise SplitInputError(f"work must not be negative, got {value!r}")
    return Fraction(value)


def owner_fee(amount: int, fee_bps: int) -> int:
    """``ceil(amount * fee_bps / 10 000)``."""
    return -((-amount * fee_bps) // BPS)


def split_payout(
    amount: int,
    fee_bps: int,
    member_work: Mapping[int, Work],
    unattributed_work: Work = 0,
) -> Split:
    """Split ``amount`` base units among members by work, minus the owner fee (see module)."""
    if type(amount) is not int or amount <= 0:
        raise SplitInputError(f"amount must be a positive integer, got {amount!r}")
    if type(fee_bps) is not int or not 0 <= fee_bps <= BPS:
        raise SplitInputError(f"fee_bps must be an integer in 0..10000, got {fee_bps!r}")
    work = {member: exact_work(w) for member, w in member_work.items()}
    unknown = exact_work(unattributed_work)
    fee = owner_fee(amount, fee_bps)
    distributable = amount - fee
    total = sum(work.values(), Fraction(0)) + unknown
    if total == 0:
        return Split(amount, fee, {m: 0 for m in work}, 0, distributable)
    parts = {m: math.floor(distributable * w / total) for m, w in work.items()}
    unattributed = math.floor(distributable * unknown / total)
    remainder = distributable - sum(parts.values()) - unattributed
    return Split(amount, fee, parts, unattributed, remainder)
