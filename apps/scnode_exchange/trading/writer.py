"""The durable side of one trading transaction, written with few Core statements.

``TradeWriter`` is the ledger and order store as seen from inside ONE exchange transaction
(one order, or a batch of orders committed together). It follows the ledger's rules exactly
(``scnode_exchange.ledger``: balanced integer postings per asset, debits from holds or from
the available balance, frozen members cannot pay out or reserve, ``0 <= reserved <= balance``
for members) but it does the bookkeeping in memory and writes the result once:

* account rows are locked (``SELECT ... FOR UPDATE``, ascending id, one statement for all the
  accounts a step needs) and read once per transaction; their new totals are written with one
  ``executemany`` UPDATE at the end;
* ids of new orders and holds are allocated up front (PostgreSQL: ``nextval`` of the table's
  sequence; SQLite: above ``max(id)``, safe because ``BEGIN IMMEDIATE`` holds the database's
  write lock until commit), so an order, its hold, its fills and its trade rows are inserted
  with one multi-row statement per table at the end instead of a flush per object;
* journal entries get their ids the same way at the end, then entries, postings and trade
  rows are inserted with one multi-row statement per table.

The statements are fixed SQL run on the transaction's own DB-API cursor (``:name``
parameters; ``%(name)s`` on psycopg): building and caching SQLAlchemy statements cost more
CPU than the database work itself at thousands of orders per second. Timestamps are bound
exactly as SQLAlchemy binds them for the dialect, so ORM reads see the same values.

Nothing is acknowledged before ``flush()`` and the commit that follows it; if either fails the
transaction rolls back and nothing of it exists. The database's CHECK constraints (member
balances, hold remaining) stay the second line of defence, exactly as for ``Ledger``.
"""

from __future__ import annotations

import re
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import DateTime
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from scnode_exchange.ledger.errors import (
    HoldClosedError,
    InsufficientFundsError,
    InvalidAmountError,
    MemberFrozenError,
    UnbalancedEntryError,
    UnknownAccountError,
)
from scnode_exchange.ledger.models import utcnow
from scnode_exchange.ledger.service import BALANCE_MAX, Leg, check_balances_fit


@dataclass(slots=True)
class AccountRow:
    """A locked account as this transaction sees it."""

    id: int
    asset: str
    member_id: int | None
    balance: int
    reserved: int
    frozen: bool
    dirty: bool = False

    @property
    def available(self) -> int:
        """Balance not held by open holds."""
        return self.balance - self.reserved


@dataclass(slots=True)
class HoldRow:
    """A hold (new in this transaction, or read from the database)."""

    id: int
    account_id: int
    amount: int
    remaining: int
    is_open: bool
    new: bool
    reference: str | None = None
    reason: str = ""
    created_at: datetime | None = None
    closed_at: datetime | None = None
    dirty: bool = False


@dataclass(slots=True)
class OrderRow:
    """An order (new in this transaction, or read from the database)."""

    id: int
    market: str
    member_id: int
    side: str
    price: int
    remaining: int
    status: str
    hold_id: int | None
    new: bool
    type: str = ""
    tif: str = ""
    quantity: int = 0
    reject_reason: str | None = None
    priority: int | None = None
    created_at: datetime | None = None
    dirty: bool = False


@dataclass(slots=True)
class _Entry:
    kind: str
    reason: str
    reference: str | None
    actor: str
    created_at: datetime
    legs: list[tuple[int, int]]
    trade: dict[str, Any] | None


_PARAM = re.compile(r":([a-z_][a-z0-9_]*)")

HOLD_COLUMNS = (
    "id", "account_id", "amount", "remaining", "reference", "reason", "is_open", "created_at",
    "closed_at",
)  # fmt: skip
ORDER_COLUMNS = (
    "id", "market", "member_id", "side", "type", "tif", "price", "quantity", "remaining",
    "status", "reject_reason", "priority", "hold_id", "created_at", "updated_at",
)  # fmt: skip
ENTRY_COLUMNS = ("id", "kind", "reason", "reference", "actor", "created_at")
POSTING_COLUMNS = ("entry_id", "account_id", "amount")
TRADE_COLUMNS = (
    "market", "seq", "maker_order_id", "taker_order_id", "buyer_id", "seller_id", "taker_side",
    "price", "quantity", "base_amount", "quote_amount", "buyer_fee", "seller_fee", "entry_id",
    "created_at",
)  # fmt: skip


_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class _Update:
    """An update by id: SQLite's per-row statement, PostgreSQL's columns, casts and SET list
    (``v`` = the new values, ``t`` = the table)."""

    table: str
    columns: tuple[str, ...]
    casts: tuple[str, ...]
    assignments: str
    sqlite: str


HOLD_UPDATE = _Update(
    "holds",
    ("id", "remaining", "is_open", "closed_at"),
    ("bigint", "bigint", "boolean", "timestamptz"),
    "remaining = v.remaining, is_open = v.is_open, closed_at = coalesce(v.closed_at, t.closed_at)",
    "UPDATE holds SET remaining = :remaining, is_open = :is_open, "
    "closed_at = coalesce(:closed_at, closed_at) WHERE id = :id",
)
ORDER_UPDATE = _Update(
    "orders",
    ("id", "remaining", "status", "updated_at"),
    ("bigint", "bigint", "text", "timestamptz"),
    "remaining = v.remaining, status = v.status, updated_at = v.updated_at",
    "UPDATE orders SET remaining = :remaining, status = :status, updated_at = :updated_at "
    "WHERE id = :id",
)
ACCOUNT_UPDATE = _Update(
    "accounts",
    ("id", "balance", "reserved"),
    ("bigint", "bigint", "bigint"),
    "balance = v.balance, reserved = v.reserved",
    "UPDATE accounts SET balance = :balance, reserved = :reserved WHERE id = :id",
)


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    return (
        # only ever called with the constant table and column names above
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
        f"VALUES ({', '.join(':' + c for c in columns)})"
    )


class TradeWriter:
    """Everything one exchange transaction reads, checks and writes (see the module doc)."""

    _sql_cache: dict[tuple[bool, str], str] = {}  # noqa: RUF012  (a cache, shared on purpose)

    def __init__(self, session: Session) -> None:
        self.session = session
        self.conn = session.connection()
        dialect = self.conn.dialect
        self.postgres = dialect.name == "postgresql"
        self._driver: Any = cast(Any, self.conn.connection.driver_connection)
        self._cursor: Any = self._driver.cursor()
        self._dbapi_error: type[Exception] = dialect.loaded_dbapi.Error
        processor = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
        self._timestamp: Callable[[Any], Any] = processor or (lambda value: value)
        self.accounts: dict[int, AccountRow] = {}
        self.holds: dict[int, HoldRow] = {}
        self.orders: dict[int, OrderRow] = {}
        self.entries: list[_Entry] = []
        self.next_seq: dict[str, tuple[int, bool]] = {}  # market -> (next seq, row is new)
        self._order_ids: deque[int] = deque()
        self._hold_ids: deque[int] = deque()
        self._sqlite_next: list[int] | None = None  # next order, hold, entry id

    # --- SQL --------------------------------------------------------------------------------

    def _sql(self, query: str) -> str:
        key = (self.postgres, query)
        found = self._sql_cache.get(key)
        if found is None:
            found = _PARAM.sub(r"%(\1)s", query) if self.postgres else query
            self._sql_cache[key] = found
        return found

    @contextmanager
    def _translated(self, statement: str) -> Iterator[None]:
        """Raise the driver's errors as SQLAlchemy's (IntegrityError, OperationalError, ...),
        as they would be through the ORM, so callers need not know how rows were written."""
        try:
            yield
        except self._dbapi_error as exc:
            raise DBAPIError.instance(statement, None, exc, self._dbapi_error) from exc

    def _rows(self, query: str, params: dict[str, Any] | None = None) -> list[Any]:
        with self._translated(query):
            self._cursor.execute(self._sql(query), params or {})
            return list(self._cursor.fetchall())

    def _many(self, query: str, rows: list[dict[str, Any]]) -> None:
        with self._translated(query):
            if len(rows) == 1:
                self._cursor.execute(self._sql(query), rows[0])
            else:
                self._cursor.executemany(self._sql(query), rows)

    def _insert(self, table: str, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
        """Insert ``rows``: ``executemany`` on SQLite (in-process, no round trips), one
        multi-row ``INSERT`` per 1 000 rows on PostgreSQL (one round trip instead of many)."""
        if not self.postgres:
            self._many(_insert_sql(table, columns), rows)
            return
        one = "(" + ", ".join(["%s"] * len(columns)) + ")"
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            self._cursor.execute(
                # constant table and column names; the values travel as parameters
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608
                + ", ".join([one] * len(chunk)),
                [row[c] for row in chunk for c in columns],
                prepare=False,
            )

    def _update(self, spec: _Update, rows: list[dict[str, Any]]) -> None:
        """Update rows by id: ``executemany`` on SQLite, one ``UPDATE ... FROM (VALUES ...)``
        per 1 000 rows on PostgreSQL."""
        if not self.postgres:
            self._many(spec.sqlite, rows)
            return
        one = "(" + ", ".join(f"%s::{cast}" for cast in spec.casts) + ")"
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            self._cursor.execute(
                f"UPDATE {spec.table} AS t SET {spec.assignments} FROM (VALUES "  # noqa: S608
                + ", ".join([one] * len(chunk))
                + f") AS v({', '.join(spec.columns)}) WHERE t.id = v.id",
                [row[c] for row in chunk for c in spec.columns],
                prepare=False,
            )

    @staticmethod
    def _in(ids: Sequence[int]) -> tuple[str, dict[str, Any]]:
        names = [f"i{k}" for k in range(len(ids))]
        return ", ".join(":" + n for n in names), dict(zip(names, ids, strict=True))

    # --- ids --------------------------------------------------------------------------------

    def allocate(self, orders: int) -> None:
        """Make ids ready for ``orders`` new orders and as many holds (one round trip)."""
        if self.postgres:
            rows = self._rows(
                "SELECT nextval(pg_get_serial_sequence('orders', 'id')), "
                "nextval(pg_get_serial_sequence('holds', 'id')) FROM generate_series(1, :n)",
                {"n": orders},
            )
            self._order_ids.extend(int(r[0]) for r in rows)
            self._hold_ids.extend(int(r[1]) for r in rows)
        elif self._sqlite_next is None:
            # BEGIN IMMEDIATE: no other writer can insert until this transaction ends
            row = self._rows(
                "SELECT (SELECT coalesce(max(id), 0) FROM orders), "
                "(SELECT coalesce(max(id), 0) FROM holds), "
                "(SELECT coalesce(max(id), 0) FROM journal_entries)"
            )[0]
            self._sqlite_next = [int(row[0]) + 1, int(row[1]) + 1, int(row[2]) + 1]

    def _new_id(self, pool: deque[int], which: int) -> int:
        if pool:
            return pool.popleft()
        if self.postgres:
            table = ("orders", "holds")[which]
            return int(self._rows(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))")[0][0])
        if self._sqlite_next is None:
            self.allocate(0)
        assert self._sqlite_next is not None
        value = self._sqlite_next[which]
        self._sqlite_next[which] += 1
        return value

    def _entry_ids(self, count: int) -> list[int]:
        if self.postgres:
            rows = self._rows(
                "SELECT nextval(pg_get_serial_sequence('journal_entries', 'id')) "
                "FROM generate_series(1, :n)",
                {"n": count},
            )
            return [int(r[0]) for r in rows]
        if self._sqlite_next is None:
            self.allocate(0)
        assert self._sqlite_next is not None
        first = self._sqlite_next[2]
        self._sqlite_next[2] += count
        return list(range(first, first + count))

    # --- reads ------------------------------------------------------------------------------

    def market_seq(self, market: str) -> int | None:
        """Lock the market's sequence row; its stored next sequence, or None if there is none."""
        query = "SELECT next_seq FROM market_state WHERE market = :market"
        if self.postgres:
            query = "SELECT next_seq FROM market_state WHERE market = :market FOR UPDATE"
        rows = self._rows(query, {"market": market})
        return int(rows[0][0]) if rows else None

    def set_next_seq(self, market: str, next_seq: int, *, new: bool = False) -> None:
        """Store the market's next sequence number at ``flush()``."""
        was_new = self.next_seq.get(market, (0, False))[1]
        self.next_seq[market] = (next_seq, new or was_new)

    def lock_accounts(self, ids: Iterable[int]) -> None:
        """Lock and read the accounts not yet read in this transaction (ascending id)."""
        wanted = sorted(set(ids) - self.accounts.keys())
        if not wanted:
            return
        placeholders, params = self._in(wanted)
        lock = " FOR UPDATE OF a" if self.postgres else ""
        rows = self._rows(
            # placeholders are generated names (:i0, :i1, ...), the ids travel as parameters
            "SELECT a.id, a.asset, a.member_id, a.balance, a.reserved, m.frozen "  # noqa: S608
            "FROM accounts a LEFT OUTER JOIN members m ON a.member_id = m.id "
            f"WHERE a.id IN ({placeholders}) ORDER BY a.id{lock}",
            params,
        )
        for r in rows:
            self.accounts[r[0]] = AccountRow(
                int(r[0]), r[1], r[2], int(r[3]), int(r[4]), bool(r[5])
            )
        missing = set(wanted) - self.accounts.keys()
        if missing:
            raise UnknownAccountError(f"no accounts {sorted(missing)}")

    def account(self, account_id: int) -> AccountRow:
        """The locked account (locking it first if needed)."""
        found = self.accounts.get(account_id)
        if found is None:
            self.lock_accounts([account_id])
            found = self.accounts[account_id]
        return found

    def load_orders(self, ids: Iterable[int], *, lock: bool = False) -> None:
        """Read the stored orders (and their holds) not yet known in this transaction."""
        wanted = sorted(set(ids) - self.orders.keys())
        if not wanted:
            return
        placeholders, params = self._in(wanted)
        for_update = " FOR UPDATE OF o" if lock and self.postgres else ""
        rows = self._rows(
            # placeholders are generated names (:i0, :i1, ...), the ids travel as parameters
            "SELECT o.id, o.market, o.member_id, o.side, o.price, o.remaining, o.status, "  # noqa: S608
            "o.hold_id, h.account_id, h.amount, h.remaining, h.is_open "
            "FROM orders o LEFT OUTER JOIN holds h ON o.hold_id = h.id "
            f"WHERE o.id IN ({placeholders}) ORDER BY o.id{for_update}",
            params,
        )
        for r in rows:
            hold_id = None if r[7] is None else int(r[7])
            self.orders[int(r[0])] = OrderRow(
                int(r[0]), r[1], int(r[2]), r[3], int(r[4]), int(r[5]), r[6], hold_id, new=False
            )
            if hold_id is not None and hold_id not in self.holds:
                self.holds[hold_id] = HoldRow(
                    hold_id, int(r[8]), int(r[9]), int(r[10]), bool(r[11]), new=False
                )

    # --- changes ----------------------------------------------------------------------------

    def new_order(
        self, market: str, member_id: int, side: str, order_type: str, tif: str, price: int,
        quantity: int,
    ) -> OrderRow:  # fmt: skip
        """A new order row (stored as ``rejected`` with nothing remaining until changed)."""
        order = OrderRow(
            self._new_id(self._order_ids, 0), market, member_id, side, price, 0, "rejected",
            None, new=True, type=order_type, tif=tif, quantity=quantity, created_at=utcnow(),
        )  # fmt: skip
        self.orders[order.id] = order
        return order

    def reserve(
        self, account: AccountRow, amount: int, reason: str, reference: str | None
    ) -> HoldRow:
        """``Ledger.reserve`` on a locked account: hold ``amount`` of its available balance."""
        if type(amount) is not int or amount <= 0:
            raise InvalidAmountError(f"amount must be a positive integer, got {amount!r}")
        if account.member_id is None:
            raise UnknownAccountError("holds are for member accounts")
        if account.frozen:
            raise MemberFrozenError(f"member {account.member_id} is frozen")
        if amount > account.available:
            raise InsufficientFundsError(
                f"account {account.id} ({account.asset}) has {account.available} available, "
                f"needs {amount}"
            )
        account.reserved += amount
        account.dirty = True
        hold = HoldRow(
            self._new_id(self._hold_ids, 1), account.id, amount, amount, True, new=True,
            reference=reference, reason=reason, created_at=utcnow(),
        )  # fmt: skip
        self.holds[hold.id] = hold
        return hold

    def release(self, hold: HoldRow, amount: int | None = None) -> None:
        """``Ledger.release``: give back ``amount`` (default: all that remains) of a hold."""
        amount = hold.remaining if amount is None else amount
        if amount == 0 and hold.remaining == 0:
            hold.is_open = False
            hold.dirty = True
            return
        if type(amount) is not int or amount <= 0:
            raise InvalidAmountError(f"amount must be a positive integer, got {amount!r}")
        if not hold.is_open or amount > hold.remaining:
            raise HoldClosedError(
                f"hold {hold.id} cannot release {amount} (remaining {hold.remaining})"
            )
        account = self.account(hold.account_id)
        hold.remaining -= amount
        account.reserved -= amount
        account.dirty = hold.dirty = True
        if hold.remaining == 0:
            hold.is_open = False
            hold.closed_at = utcnow()

    def post(
        self,
        kind: str,
        reason: str,
        legs: Sequence[Leg],
        *,
        reference: str | None,
        actor: str,
        trade: dict[str, Any] | None = None,
    ) -> None:
        """``Ledger.post`` on locked accounts: check and apply one balanced journal entry.

        The entry's ``reference`` is unique in the database; a second use of it fails the
        insert (and the transaction) rather than returning the first entry, because the
        exchange never posts the same fill twice. ``trade``: the trade row that points at the
        entry.
        """
        if len(legs) < 2:
            raise UnbalancedEntryError("an entry needs at least two postings")
        for leg in legs:
            if type(leg.amount) is not int or leg.amount == 0:
                raise InvalidAmountError(f"posting amount must be a non-zero integer: {leg!r}")
            if not -BALANCE_MAX <= leg.amount <= BALANCE_MAX:
                raise InvalidAmountError(f"posting amount beyond {BALANCE_MAX}: {leg!r}")
            if leg.hold_id is not None and leg.amount > 0:
                raise InvalidAmountError("only a debit can be paid from a hold")
        self.lock_accounts(leg.account_id for leg in legs)
        accounts = self.accounts
        per_asset: dict[str, int] = defaultdict(int)
        for leg in legs:
            per_asset[accounts[leg.account_id].asset] += leg.amount
        unbalanced = {asset: total for asset, total in per_asset.items() if total != 0}
        if unbalanced:
            raise UnbalancedEntryError(f"postings do not sum to zero per asset: {unbalanced}")
        from_hold: dict[int, int] = defaultdict(int)
        free_debit: dict[int, int] = defaultdict(int)
        net: dict[int, int] = defaultdict(int)
        for leg in legs:
            net[leg.account_id] += leg.amount
            if leg.hold_id is not None:
                hold = self.holds.get(leg.hold_id)
                if hold is None:
                    raise HoldClosedError(f"unknown hold {leg.hold_id}")
                if hold.account_id != leg.account_id:
                    raise HoldClosedError(f"hold {hold.id} is not on account {leg.account_id}")
                from_hold[leg.hold_id] += -leg.amount
            elif leg.amount < 0:
                free_debit[leg.account_id] += -leg.amount
        for hold_id, amount in from_hold.items():
            hold = self.holds[hold_id]
            if not hold.is_open or amount > hold.remaining:
                raise HoldClosedError(
                    f"hold {hold_id} cannot pay {amount} (remaining {hold.remaining})"
                )
        for account_id, debit in free_debit.items():
            account = accounts[account_id]
            if account.member_id is None:
                continue
            if account.frozen:
                raise MemberFrozenError(f"member {account.member_id} is frozen")
            if debit > account.available:
                raise InsufficientFundsError(
                    f"account {account_id} ({account.asset}) has {account.available} "
                    f"available, needs {debit}"
                )
        check_balances_fit({i: accounts[i].balance + amount for i, amount in net.items()})
        now = utcnow()
        for hold_id, amount in from_hold.items():
            hold = self.holds[hold_id]
            hold.remaining -= amount
            hold.dirty = True
            accounts[hold.account_id].reserved -= amount
            if hold.remaining == 0:
                hold.is_open = False
                hold.closed_at = now
        for account_id, amount in net.items():
            account = accounts[account_id]
            account.balance += amount
            account.dirty = True
            if account.member_id is not None and not (0 <= account.reserved <= account.balance):
                raise InsufficientFundsError(f"account {account.id} would hold more than it has")
        self.entries.append(
            _Entry(
                kind,
                reason,
                reference,
                actor,
                now,
                [(leg.account_id, leg.amount) for leg in legs],
                trade,
            )
        )

    # --- the one write ----------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything this transaction changed: a handful of multi-row statements.

        On PostgreSQL they are sent in one pipeline (one round trip; an error in any of them
        still fails the flush, and the transaction with it).
        """
        entry_ids = self._entry_ids(len(self.entries)) if self.entries else []
        if self.postgres:
            with self._translated("(pipelined writes)"), self._driver.pipeline():
                self._write(entry_ids)
        else:
            self._write(entry_ids)

    def _write(self, entry_ids: list[int]) -> None:
        # order matters for the foreign keys (SQLite checks them per statement): holds before
        # the orders that name them, orders and entries before the trades that name them
        ts = self._timestamp
        now = ts(utcnow())
        new_holds = [h for h in self.holds.values() if h.new]
        if new_holds:
            self._insert(
                "holds",
                HOLD_COLUMNS,
                [
                    {
                        "id": h.id,
                        "account_id": h.account_id,
                        "amount": h.amount,
                        "remaining": h.remaining,
                        "reference": h.reference,
                        "reason": h.reason,
                        "is_open": h.is_open,
                        "created_at": ts(h.created_at),
                        "closed_at": ts(h.closed_at),
                    }
                    for h in new_holds
                ],
            )
        new_orders = [o for o in self.orders.values() if o.new]
        if new_orders:
            self._insert(
                "orders",
                ORDER_COLUMNS,
                [
                    {
                        "id": o.id,
                        "market": o.market,
                        "member_id": o.member_id,
                        "side": o.side,
                        "type": o.type,
                        "tif": o.tif,
                        "price": o.price,
                        "quantity": o.quantity,
                        "remaining": o.remaining,
                        "status": o.status,
                        "reject_reason": o.reject_reason,
                        "priority": o.priority,
                        "hold_id": o.hold_id,
                        "created_at": ts(o.created_at),
                        "updated_at": now,
                    }
                    for o in new_orders
                ],
            )
        changed_holds = [h for h in self.holds.values() if h.dirty and not h.new]
        if changed_holds:
            self._update(
                HOLD_UPDATE,
                [
                    {
                        "id": h.id,
                        "remaining": h.remaining,
                        "is_open": h.is_open,
                        "closed_at": ts(h.closed_at),
                    }
                    for h in changed_holds
                ],
            )
        changed_orders = [o for o in self.orders.values() if o.dirty and not o.new]
        if changed_orders:
            self._update(
                ORDER_UPDATE,
                [
                    {"id": o.id, "remaining": o.remaining, "status": o.status, "updated_at": now}
                    for o in changed_orders
                ],
            )
        changed_accounts = sorted(
            (a for a in self.accounts.values() if a.dirty), key=lambda a: a.id
        )
        if changed_accounts:
            self._update(
                ACCOUNT_UPDATE,
                [
                    {"id": a.id, "balance": a.balance, "reserved": a.reserved}
                    for a in changed_accounts
                ],
            )
        if self.entries:
            ids = entry_ids
            entries: list[dict[str, Any]] = []
            postings: list[dict[str, Any]] = []
            trades: list[dict[str, Any]] = []
            for entry_id, e in zip(ids, self.entries, strict=True):
                created = ts(e.created_at)
                entries.append(
                    {
                        "id": entry_id,
                        "kind": e.kind,
                        "reason": e.reason,
                        "reference": e.reference,
                        "actor": e.actor,
                        "created_at": created,
                    }
                )
                postings.extend(
                    {"entry_id": entry_id, "account_id": account_id, "amount": amount}
                    for account_id, amount in e.legs
                )
                if e.trade is not None:
                    trades.append({**e.trade, "entry_id": entry_id, "created_at": created})
            self._insert("journal_entries", ENTRY_COLUMNS, entries)
            self._insert("postings", POSTING_COLUMNS, postings)
            if trades:
                self._insert("trades", TRADE_COLUMNS, trades)
        for market, (next_seq, new) in self.next_seq.items():
            self._many(
                "INSERT INTO market_state (market, next_seq) VALUES (:market, :next_seq)"
                if new
                else "UPDATE market_state SET next_seq = :next_seq WHERE market = :market",
                [{"market": market, "next_seq": next_seq}],
            )
