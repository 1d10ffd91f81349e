"""ONE hypothesis state machine over the whole exchange (issue 6, item 7).

Random interleavings of: deposits on two chains observed the way the deposit watcher does
(payments seen in the mempool, blocks mined → pending → credited at N, reorgs before and
after N with the outputs dropped or back in the mempool, replays of recent events as after a
watcher crash — event observations are unverified, a credit is only ever reversed on the
wallet's word, exactly like ``DepositWatcher``), orders (GTC, post-only, IOC; takers that
fill), cancels (own and others'), withdrawals through their state machine (request → (owner
approval) → sending → paid by the wallet → broadcast → confirmed, or refused → refunded;
member cancels, owner rejections), owner resolutions of deposit alerts (re-credit, write-off)
and unfreezes, the wallet drained behind the exchange's back or topped up by the owner, and
crashes (every in-memory object dropped and rebuilt from the database, as a restart would).

After every step:

* the ledger audits clean (per-asset sum of all accounts 0, no member balance or reserved
  amount below zero, reserved <= balance, running totals = postings, closed holds empty) and
  every journal entry balances per asset on its own;
* the holds are exactly the open orders' and the withdrawals' reservations (each open order
  holds what its remaining lots can cost; a withdrawal not yet broadcast holds amount + fee;
  no other hold is open);
* the book rebuilt from the database equals the book in memory;
* no deposit reference credited twice (one ``deposit:`` entry at most per output, and only
  for outputs that reached N confirmations), no withdrawal settled twice or without a payment;
* solvency against a MODEL of each wallet (trusted balance = confirmed deposit outputs -
  withdrawals paid (amount + network fee) + owner top-ups - drains): the check's margin equals
  the model's, an alert is open exactly when the model is short, it is raised once per
  shortfall (not at every check, not again after a crash) and cleared when the margin is back;
  and without a real loss (a drain, a reorg of funds the member had already spent) the margin
  never goes below zero.

Building it turned up (and an earlier version of it reproduced on the unfixed code): a
deposit reorged after credit, re-credited by the owner when it came back, then reorged away
again could not be reversed a second time (the alert's unique deposit: the watcher's batch
failed for good and the member kept coins the wallet no longer had) — fixed in
``deposits.service``, pinned by ``solvency/test_deposit_reorged_again.py``.

Bounded for CI: 20 examples of up to 40 steps on SQLite (about 17 s of CPU; 29 s wall at load
6 on the shared 2-core machine), 5 examples on PostgreSQL (13 s).
Longer runs:

    SCNODE_HYPOTHESIS_PROFILE=long pytest tests/unit/apps/exchange/test_combined_machine.py

(``long``: 400 examples of up to 120 steps per database; add ``-s`` to see the event counts).
"""

from __future__ import annotations

import importlib
import itertools
import os
import pkgutil
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import scnode_exchange
from scnode_exchange.db import Base
from scnode_exchange.deposits.service import (
    ChainDepositConfig,
    DepositError,
    DepositService,
    Observation,
)
from scnode_exchange.ledger import (
    AZC,
    SATS,
    Account,
    AssetSpec,
    JournalEntry,
    Ledger,
    Posting,
    verify,
)
from scnode_exchange.ledger.models import Hold, Member
from scnode_exchange.matching import Fill, MarketSpec, OrderType, Side, TimeInForce
from scnode_exchange.solvency import SolvencyMetrics, SolvencyService
from scnode_exchange.trading.models import Order
from scnode_exchange.trading.service import (
    Exchange,
    OrderNotFoundError,
    book_from_db,
    verify_orders,
)
from scnode_exchange.withdrawals import (
    InvalidTransitionError,
    Withdrawal,
    WithdrawalPolicy,
    WithdrawalRefusedError,
    WithdrawalService,
)
from scnode_exchange.withdrawals.address import encode_segwit

# every package's tables, so emptying the database between examples misses none
for _module in pkgutil.walk_packages(scnode_exchange.__path__, "scnode_exchange."):
    if _module.name.endswith(".models"):
        importlib.import_module(_module.name)

N = 2  # confirmations to credit, both chains
CHAINS = {"bitcoin": SATS, "azcoin": AZC}
HRP = {"bitcoin": "bcrt", "azcoin": "azrt"}
WITHDRAWAL_FEE = 300  # the member's fee; the wallet's network fee is 0..300 (see README)
POLICIES = {
    chain: WithdrawalPolicy(asset=asset, hrp=HRP[chain], min_amount=546, flat_fee=WITHDRAWAL_FEE,
                            approval_threshold=60_000, confirmations=2)
    for chain, asset in CHAINS.items()
}  # fmt: skip
LOT = 1_000
MARKET = MarketSpec("AZC/SATS", AZC, SATS, lot_size=LOT, tick=5, maker_fee_bps=10,
                    taker_fee_bps=25)  # fmt: skip
MEMBERS = 3
ACTIVE = ("reserved", "awaiting_approval", "approved", "sending")

CHAIN = st.sampled_from(list(CHAINS))
WHO = st.integers(0, MEMBERS - 1)
PICK = st.integers(0, 1000)
# action: (weight, its arguments). One rule draws an action by weight: every kind of step
# shows up in a bounded run (hypothesis' own rule choice left whole kinds out of many runs).
# The first one is drawn more often than its weight says (hypothesis favours index 0): it is
# ``place``, which builds the book the takers, cancels and fills need.
ACTIONS: dict[str, tuple[int, dict[str, st.SearchStrategy[Any]]]] = {
    "place": (2, {"who": WHO, "side": st.sampled_from([Side.BUY, Side.SELL]),
                  "ticks": st.integers(-3, 3), "qty": st.integers(1, 40),
                  "tif": st.sampled_from(list(TimeInForce))}),
    "take": (2, {"who": WHO, "qty": st.integers(1, 50),
                 "tif": st.sampled_from([TimeInForce.GTC, TimeInForce.IOC])}),
    "worker": (4, {"pick": PICK,
                   "until": st.sampled_from(["confirmed", "broadcast", "paid", "sending"]),
                   "network_fee": st.integers(0, WITHDRAWAL_FEE)}),
    "request_withdrawal": (3, {"who": WHO, "chain": CHAIN, "amount": st.integers(546, 120_000)}),
    "mine": (3, {"chain": CHAIN, "blocks": st.integers(1, 2)}),
    "reorg": (3, {"chain": CHAIN, "pick": PICK,
                  "fate": st.sampled_from(["reincluded", "mempool", "drop"]),
                  "mine_first": st.integers(0, 2)}),
    "cancel": (2, {"pick": PICK, "who": WHO}),
    "pay": (2, {"chain": CHAIN, "who": WHO, "amount": st.integers(1_000, 150_000)}),
    "replay_events": (1, {"chain": CHAIN, "last": st.integers(1, 8)}),
    "wallet_catch_up": (1, {"chain": CHAIN}),
    "drain": (1, {"chain": CHAIN, "amount": st.integers(1, 100_000)}),
    "top_up": (1, {"chain": CHAIN, "amount": st.integers(1, 100_000)}),
    "owner_decides": (1, {"pick": PICK, "approve": st.booleans()}),
    "member_cancels_withdrawal": (1, {"pick": PICK}),
    "resolve_deposit_alert": (2, {"pick": PICK,
                                  "action": st.sampled_from(["recredit", "write_off"])}),
    "owner_unfreezes": (1, {"who": WHO}),
    "crash": (1, {}),
}  # fmt: skip
WEIGHTED = [name for name, (weight, _) in ACTIONS.items() for _ in range(weight)]

PROFILES = {
    # (max_examples SQLite, max_examples PostgreSQL, steps)
    "ci": (20, 5, 40),
    "long": (400, 100, 120),
}
PROFILE = os.environ.get("SCNODE_HYPOTHESIS_PROFILE", "ci")
EVENTS: Counter[str] = Counter()


@dataclass
class Output:
    """One payment to a member's deposit address in the model chain."""

    chain: str
    txid: str
    member: int
    amount: int
    confirmations: int = 0  # -1: gone (reorged away and dropped), 0: mempool
    block: str | None = None

    def observation(self, address: str, *, verified: bool) -> Observation:
        in_chain = self.confirmations > 0
        return Observation(
            self.chain, self.txid, 0, address, self.amount, self.confirmations,
            self.block if in_chain else None, verified=verified,
        )  # fmt: skip


@dataclass
class Payout:
    """A withdrawal as the model knows it."""

    id: int
    chain: str
    member: int
    amount: int
    fee: int
    state: str
    txid: str | None = None  # set when the wallet paid it
    network_fee: int = 0

    @property
    def total(self) -> int:
        return self.amount + self.fee


def _empty_database(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        for table in reversed(Base.metadata.sorted_tables):
            s.execute(table.delete())
        Ledger(s).ensure_assets([AssetSpec("MICRO", "Test microcurrency", 8, "musat")])


def _machine(sessions: sessionmaker[Session]) -> type[RuleBasedStateMachine]:
    class ExchangeMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            _empty_database(sessions)
            self._ids = itertools.count(1)
            self.members: list[int] = []
            self.outputs: list[Output] = []
            self.journal: dict[str, list[Observation]] = {c: [] for c in CHAINS}
            self.payouts: list[Payout] = []
            self.orders: list[tuple[int, int]] = []
            self.adjustment: dict[str, int] = dict.fromkeys(CHAINS.values(), 0)  # +top-up -drain
            self.alert_open: dict[str, bool] = dict.fromkeys(CHAINS.values(), False)
            self.loss: dict[str, bool] = dict.fromkeys(CHAINS.values(), False)
            self.ever_credited: set[str] = set()
            self.start()
            EVENTS["examples"] += 1

        def start(self) -> None:
            """What a (re)start builds: every service and the books, from the database."""
            self.deposits = DepositService(
                sessions, {c: ChainDepositConfig(a, N) for c, a in CHAINS.items()}
            )
            self.withdrawals = WithdrawalService(sessions, POLICIES)
            self.exchange = Exchange(sessions, [MARKET])
            self.solvency = SolvencyService(
                sessions, CHAINS, confirm_checks=1, metrics=SolvencyMetrics()
            )

        # -- the model chain and the watcher's way of feeding the deposit service ------------
        def address(self, chain: str, member: int) -> str:
            return f"{chain}-deposit-{member}"

        def feed(self, chain: str, outputs: list[Output]) -> None:
            """Events for ``outputs`` (their current truth), applied as the watcher does:
            unverified, then the wallet's truth for any credit they would reverse."""
            events = [o.observation(self.address(chain, o.member), verified=False)
                      for o in outputs]  # fmt: skip
            self.journal[chain].extend(events)
            self.apply(chain, events)

        def apply(self, chain: str, observations: list[Observation]) -> None:
            result = self.deposits.apply(observations)
            if result.to_verify:
                truth = {o.txid: o for o in self.outputs if o.chain == chain}
                verified = [truth[o.txid].observation(o.address, verified=True)
                            for o in result.to_verify]  # fmt: skip
                result2 = self.deposits.apply(verified)
                result.credited += result2.credited
                result.reversed += result2.reversed
            for key in result.credited:
                EVENTS["credited"] += 1
                txid = key.split(":")[1]
                # a deposit reversed after credit stays in suspense: never credited again
                assert key not in self.ever_credited, key
                output = next(o for o in self.outputs if o.txid == txid)
                assert output.confirmations >= N, "credited below N confirmations"
                self.ever_credited.add(key)
            if result.reversed:
                EVENTS["reversed after credit"] += len(result.reversed)

        @initialize()
        def members_deposit(self) -> None:
            with sessions.begin() as s:
                ledger = Ledger(s)
                for i in range(MEMBERS):
                    self.members.append(ledger.create_member(f"m{i}").id)
            for chain in CHAINS:
                for member in self.members:
                    self.deposits.record_address(member, chain, self.address(chain, member))
                for member in self.members:
                    self.pay_output(chain, member, 400_000)
                self.mine_blocks(chain, N + 3)  # deeper than any reorg: trading can start

        def pay_output(self, chain: str, member: int, amount: int) -> None:
            output = Output(chain, f"{next(self._ids):064x}", member, amount)
            self.outputs.append(output)
            self.feed(chain, [output])

        def mine_blocks(self, chain: str, blocks: int) -> None:
            moved = [o for o in self.outputs if o.chain == chain and o.confirmations >= 0]
            for output in moved:
                if output.confirmations == 0:
                    output.block = f"{chain}-block-{next(self._ids)}"
                output.confirmations += blocks
            self.feed(chain, moved)

        @rule(data=st.data())
        def step(self, data: st.DataObject) -> None:
            name = data.draw(st.sampled_from(WEIGHTED), label="action")
            _, strategies = ACTIONS[name]
            args = {arg: data.draw(strategy, label=arg) for arg, strategy in strategies.items()}
            EVENTS[f"action {name}"] += 1
            getattr(self, name)(**args)

        # -- chain steps ----------------------------------------------------------------------
        def pay(self, chain: str, who: int, amount: int) -> None:
            self.pay_output(chain, self.members[who], amount)

        def mine(self, chain: str, blocks: int) -> None:
            self.mine_blocks(chain, blocks)

        def reorg(self, chain: str, pick: int, fate: str, mine_first: int) -> None:
            """Blocks are mined (``mine_first``), then the blocks down to the one holding a
            recent output (at most 4 deep) are replaced by as many others. The outputs in them
            are dropped (conflicted), wait in the mempool, or are re-included in the new
            blocks — in another block at the same depth, so one credited at N stays credited
            on its new block and one below N is reorged (before or after N)."""
            if mine_first:
                self.mine_blocks(chain, mine_first)
            recent = [o for o in self.outputs if o.chain == chain and 1 <= o.confirmations <= 4]
            if not recent:
                return
            depth = recent[pick % len(recent)].confirmations
            hit = [o for o in self.outputs
                   if o.chain == chain and 1 <= o.confirmations <= depth]  # fmt: skip
            for output in hit:
                EVENTS["reorg after N" if output.confirmations >= N else "reorg before N"] += 1
                if fate == "reincluded":
                    output.block = f"{chain}-block-{next(self._ids)}"
                else:
                    output.confirmations = -1 if fate == "drop" else 0
                    output.block = None
            self.feed(chain, hit)

        def replay_events(self, chain: str, last: int) -> None:
            """A watcher killed before committing its cursor replays its last batch."""
            batch = self.journal[chain][-last:]
            if batch:
                self.apply(chain, list(batch))

        def wallet_catch_up(self, chain: str) -> None:
            """A restart's catch-up: every output as the wallet sees it now."""
            truth = [o.observation(self.address(chain, o.member), verified=True)
                     for o in self.outputs if o.chain == chain]  # fmt: skip
            self.apply(chain, truth)

        def drain(self, chain: str, amount: int) -> None:
            """sendtoaddress from the node wallet behind the exchange's back."""
            asset = CHAINS[chain]
            self.adjustment[asset] -= min(amount, max(self.wallet(asset), 0))
            self.loss[asset] = True

        def top_up(self, chain: str, amount: int) -> None:
            """The owner pays the node wallet from outside (not to a member's address)."""
            self.adjustment[CHAINS[chain]] += amount

        # -- trading -------------------------------------------------------------------------
        def counterparty(self, who: int, side: Side) -> int:
            """Member ``who``, or the next one when ``who`` owns the best order on the other
            side (self-trade prevention would cancel it instead of a fill)."""
            bids, asks = self.exchange.books[MARKET.symbol].snapshot()
            opposite = asks if side is Side.BUY else bids
            member = self.members[who]
            if opposite and opposite[0][1][0][1] == member:
                member = self.members[(who + 1) % MEMBERS]
            return member

        def place(self, who: int, side: Side, ticks: int, qty: int, tif: TimeInForce) -> None:
            bids, asks = (
                sum(len(orders) for _, orders in levels)
                for levels in self.exchange.books[MARKET.symbol].snapshot()
            )
            # the thinner side of the book gets the order (the drawn side when even): the
            # draws leaned to one side and left few fills
            if bids != asks:
                side = Side.SELL if bids > asks else Side.BUY
            member = self.counterparty(who, side)
            # around the opposite side's best price, so about half of the orders cross
            book = self.exchange.books[MARKET.symbol]
            best = book.best_ask() if side is Side.BUY else book.best_bid()
            price = max(MARKET.tick, (best or 100 * MARKET.tick) + ticks * MARKET.tick)
            EVENTS[f"order {side.value}"] += 1
            result = self.exchange.place_order(member, MARKET.symbol, side, price, qty,
                                               OrderType.LIMIT, tif)  # fmt: skip
            self.orders.append((member, result.order_id))
            EVENTS[f"order {tif.value} {result.status}"] += 1
            EVENTS["fills"] += sum(isinstance(e, Fill) for e in result.events)

        def take(self, who: int, qty: int, tif: TimeInForce) -> None:
            book = self.exchange.books[MARKET.symbol]
            ask, bid = book.best_ask(), book.best_bid()
            if ask is not None:
                side, price = Side.BUY, ask
            elif bid is not None:
                side, price = Side.SELL, bid
            else:
                return
            member = self.counterparty(who, side)
            result = self.exchange.place_order(member, MARKET.symbol, side, price, qty, tif=tif)
            self.orders.append((member, result.order_id))
            EVENTS[f"take {result.status}"] += 1
            EVENTS["fills"] += sum(isinstance(e, Fill) for e in result.events)

        def cancel(self, pick: int, who: int) -> None:
            if not self.orders:
                return
            owner, order_id = self.orders[pick % len(self.orders)]
            caller = self.members[who]
            on_book = order_id in self.exchange.books[MARKET.symbol]
            try:
                self.exchange.cancel_order(caller, order_id)
            except OrderNotFoundError:
                assert caller != owner or not on_book
                return
            assert caller == owner and on_book
            EVENTS["cancelled"] += 1

        # -- withdrawals ---------------------------------------------------------------------
        def request_withdrawal(self, who: int, chain: str, amount: int) -> None:
            member = self.members[who]
            n = next(self._ids)
            try:
                info = self.withdrawals.request_withdrawal(
                    member, chain, encode_segwit(HRP[chain], 0, n.to_bytes(20, "big")), amount,
                    f"key-{n}",
                )  # fmt: skip
            except WithdrawalRefusedError as exc:
                EVENTS[f"withdrawal refused {exc.code}"] += 1
                return
            expected = "awaiting_approval" if amount > 60_000 else "reserved"
            assert info.state == expected and info.fee == WITHDRAWAL_FEE
            EVENTS["withdrawal requested"] += 1
            self.payouts.append(Payout(info.id, chain, member, amount, info.fee, info.state))

        def pick(self, pick: int, *states: str) -> Payout | None:
            found = [p for p in self.payouts if p.state in states]
            return found[pick % len(found)] if found else None

        def owner_decides(self, pick: int, approve: bool) -> None:
            payout = self.pick(pick, "awaiting_approval")
            if payout is None:
                return
            if approve:
                payout.state = self.withdrawals.approve(payout.id, "owner:test").state
                assert payout.state == "approved"
            else:
                payout.state = self.withdrawals.reject(payout.id, "owner:test", "no").state
                assert payout.state == "rejected"

        def member_cancels_withdrawal(self, pick: int) -> None:
            payout = self.pick(pick, "reserved", "awaiting_approval", "approved", "sending")
            if payout is None:
                return
            try:
                payout.state = self.withdrawals.cancel(payout.member, payout.id).state
            except InvalidTransitionError:
                assert payout.state == "sending"
                return
            assert payout.state == "cancelled"

        def worker(self, pick: int, until: str, network_fee: int) -> None:
            """The withdrawal worker takes one withdrawal as far as ``until`` (then stops, as
            if killed): claim (``sending``, key fixed), the chain API's send (the wallet pays
            once, or refuses for good when it has not enough: failed and refunded), the txid
            recorded with the hold settled (asked twice: the second is a no-op), confirmed
            with the network fee booked."""
            payout = self.pick(pick, "reserved", "approved", "sending", "broadcast")
            if payout is None:
                return
            if payout.state in ("reserved", "approved"):
                info = self.withdrawals.claim_for_sending(payout.id)
                with sessions() as s:
                    member = s.get(Member, payout.member)
                    assert member is not None
                    assert (info is None) == member.frozen  # a freeze holds it back
                if info is None:
                    return
                payout.state = info.state
                assert payout.state == "sending"
                if until == "sending":
                    return
            if payout.state == "sending" and payout.txid is None:
                asset = CHAINS[payout.chain]
                if self.wallet(asset) < payout.amount + network_fee:
                    payout.state = self.withdrawals.record_failure(
                        payout.id, "insufficient funds in the node wallet"
                    ).state
                    assert payout.state == "failed"
                    EVENTS["send refused: wallet short"] += 1
                    return
                payout.txid = f"{next(self._ids):064x}"
                payout.network_fee = network_fee
                EVENTS["paid"] += 1
                if until == "paid":
                    return
            if payout.state == "sending":
                assert payout.txid is not None
                payout.state = self.withdrawals.record_broadcast(payout.id, payout.txid).state
                assert payout.state == "broadcast"
                assert self.withdrawals.record_broadcast(payout.id, payout.txid).state == (
                    "broadcast"
                )
                if until == "broadcast":
                    return
            if payout.state == "broadcast":
                info = self.withdrawals.record_confirmations(
                    payout.id, 2, payout.network_fee or None
                )
                payout.state = info.state
                assert payout.state == "confirmed"
                EVENTS["withdrawal confirmed"] += 1

        # -- owner ---------------------------------------------------------------------------
        def resolve_deposit_alert(self, pick: int, action: str) -> None:
            alerts = self.deposits.alerts()
            outputs = {f"{o.chain}:{o.txid}:0": o for o in self.outputs}
            if action == "recredit":
                # the owner re-credits an output that is not dropped, once it is N deep again
                alerts = [a for a in alerts if outputs[a.deposit].confirmations >= 0] or alerts
            if not alerts:
                return
            alert = alerts[pick % len(alerts)]
            output = outputs[alert.deposit]
            if action == "recredit" and 0 <= output.confirmations < N:
                self.mine_blocks(output.chain, N - output.confirmations)
            try:
                self.deposits.resolve_alert(alert.id, action=action, actor="owner:test",
                                            reason="machine")  # fmt: skip
            except DepositError:
                assert action == "recredit"
                return
            EVENTS[f"deposit alert {action}"] += 1

        def owner_unfreezes(self, who: int) -> None:
            with sessions.begin() as s:
                Ledger(s).unfreeze(self.members[who])

        # -- crash ---------------------------------------------------------------------------
        def crash(self) -> None:
            """Drop every in-memory object and rebuild from the database."""
            before = self.exchange.books[MARKET.symbol]
            self.start()
            after = self.exchange.books[MARKET.symbol]
            assert after.snapshot() == before.snapshot()
            assert after.next_seq == before.next_seq
            EVENTS["crash"] += 1

        # -- the model's wallet --------------------------------------------------------------
        def wallet(self, asset: str) -> int:
            chain = next(c for c, a in CHAINS.items() if a == asset)
            confirmed = sum(o.amount for o in self.outputs
                            if o.chain == chain and o.confirmations > 0)  # fmt: skip
            paid = sum(p.amount + p.network_fee for p in self.payouts
                       if p.chain == chain and p.txid is not None)  # fmt: skip
            return confirmed - paid + self.adjustment[asset]

        # -- invariants ----------------------------------------------------------------------
        @invariant()
        def ledger_audits_clean(self) -> None:
            EVENTS["steps"] += 1
            with sessions() as s:
                report = verify(s)
                assert report.problems == []
                unbalanced = s.execute(
                    select(Posting.entry_id, Account.asset, func.sum(Posting.amount))
                    .join(Account, Account.id == Posting.account_id)
                    .group_by(Posting.entry_id, Account.asset)
                    .having(func.sum(Posting.amount) != 0)
                ).all()
                assert unbalanced == []

        @invariant()
        def holds_are_orders_and_withdrawals(self) -> None:
            with sessions() as s:
                assert verify_orders(s, [MARKET]) == []
                open_holds = {
                    h.id: h for h in s.scalars(select(Hold).where(Hold.is_open.is_(True)))
                }
                order_holds = set(s.scalars(select(Order.hold_id).where(Order.status == "open")))
                rows = {w.id: w for w in s.scalars(select(Withdrawal))}
                withdrawal_holds = set()
                for payout in self.payouts:
                    row = rows[payout.id]
                    assert row.state == payout.state, (row.id, row.state, payout.state)
                    hold = s.get(Hold, row.hold_id)
                    assert hold is not None
                    if payout.state in ACTIVE:
                        assert hold.is_open and hold.remaining == payout.total
                        withdrawal_holds.add(hold.id)
                    else:
                        assert not hold.is_open and hold.remaining == 0
                assert set(open_holds) == order_holds | withdrawal_holds
                assert not order_holds & withdrawal_holds

        @invariant()
        def book_in_memory_is_the_stored_book(self) -> None:
            book = self.exchange.books[MARKET.symbol]
            with sessions() as s:
                assert book_from_db(s, MARKET, book.next_seq).snapshot() == book.snapshot()
            bid, ask = book.best_bid(), book.best_ask()
            assert bid is None or ask is None or bid < ask

        @invariant()
        def nothing_credited_or_paid_twice(self) -> None:
            with sessions() as s:
                refs = Counter(
                    str(r)
                    for r in s.scalars(
                        select(JournalEntry.reference).where(JournalEntry.kind == "deposit")
                    )
                )
                settled = Counter(
                    str(r)
                    for r in s.scalars(
                        select(JournalEntry.reference).where(JournalEntry.kind == "withdrawal")
                    )
                )
            assert all(n == 1 for n in refs.values())
            assert set(refs) == {f"deposit:{k}" for k in self.ever_credited}
            paid = {f"withdrawal:{p.id}:settle" for p in self.payouts
                    if p.state in ("broadcast", "confirmed")}  # fmt: skip
            assert set(settled) == paid and all(n == 1 for n in settled.values())
            assert all(
                p.txid is not None for p in self.payouts if p.state in ("broadcast", "confirmed")
            )

        @invariant()
        def solvency_or_exactly_one_alert(self) -> None:
            with sessions() as s:
                owed = dict(
                    s.execute(
                        select(Account.asset, func.sum(Account.balance))
                        .where(Account.member_id.is_not(None))
                        .group_by(Account.asset)
                    ).all()
                )
            for alert in self.deposits.alerts(include_resolved=True):
                if alert.receivable > 0:
                    self.loss[alert.asset] = True
            wallets = {chain: self.wallet(asset) for chain, asset in CHAINS.items()}
            report = self.solvency.assess(wallets)
            result = self.solvency.record(report)
            open_now = self.solvency.open_alert_assets()
            for asset in CHAINS.values():
                sending = sum(p.total for p in self.payouts
                              if p.state == "sending" and CHAINS[p.chain] == asset)  # fmt: skip
                margin = self.wallet(asset) + sending - int(owed.get(asset) or 0)
                assert report.assets[asset].margin == margin, (asset, report.assets[asset])
                short = margin < 0
                assert (asset in open_now) == short
                assert (asset in result.raised) == (short and not self.alert_open[asset])
                assert (asset in result.cleared) == (not short and self.alert_open[asset])
                if short and not self.alert_open[asset]:
                    EVENTS[f"solvency alert {asset}"] += 1
                self.alert_open[asset] = short
                if not self.loss[asset]:
                    assert margin >= 0, f"{asset}: shortfall {margin} without a loss"

    return ExchangeMachine


def test_the_exchange_keeps_its_invariants_under_random_interleavings(
    sessions: sessionmaker[Session],
) -> None:
    sqlite_examples, postgres_examples, steps = PROFILES[PROFILE]
    on_sqlite = sessions.kw["bind"].dialect.name == "sqlite"
    EVENTS.clear()
    run_state_machine_as_test(
        _machine(sessions),
        settings=settings(
            max_examples=sqlite_examples if on_sqlite else postgres_examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    print("combined machine:", dict(sorted(EVENTS.items())))
