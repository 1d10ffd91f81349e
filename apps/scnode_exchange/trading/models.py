"""Tables of the order book's durable side: orders, trades and each market's sequence."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from scnode_exchange.db import Base
from scnode_exchange.ledger.models import utcnow


class MarketState(Base):
    """The next event sequence number of a market; its row lock serializes a market's writes."""

    __tablename__ = "market_state"

    market: Mapped[str] = mapped_column(String(32), primary_key=True)
    next_seq: Mapped[int] = mapped_column()


class Order(Base):
    """An order as placed, with its live state (``remaining``, ``status``) and its hold.

    ``status``: ``open`` (on the book), ``filled``, ``cancelled`` or ``rejected``. ``priority``
    is the sequence number of its acceptance (time priority when the book is rebuilt).
    """

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("remaining >= 0", name="remaining_not_negative"),
        Index("ix_orders_market_status", "market", "status"),
        Index("ix_orders_member_id", "member_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    market: Mapped[str] = mapped_column(String(32))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    side: Mapped[str] = mapped_column(String(4))
    type: Mapped[str] = mapped_column(String(8))
    tif: Mapped[str] = mapped_column(String(16))
    price: Mapped[int] = mapped_column()
    quantity: Mapped[int] = mapped_column()
    remaining: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(String(16))
    reject_reason: Mapped[str | None] = mapped_column(Text, default=None)
    priority: Mapped[int | None] = mapped_column(default=None)
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("holds.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Trade(Base):
    """One fill between a maker and a taker order: both sides' fills in one row, with the
    journal entry that moved the money."""

    __tablename__ = "trades"
    __table_args__ = (
        UniqueConstraint("market", "seq"),
        Index("ix_trades_buyer_id", "buyer_id"),
        Index("ix_trades_seller_id", "seller_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    market: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column()
    maker_order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    taker_order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    buyer_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    seller_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    taker_side: Mapped[str] = mapped_column(String(4))
    price: Mapped[int] = mapped_column()
    quantity: Mapped[int] = mapped_column()
    base_amount: Mapped[int] = mapped_column()
    quote_amount: Mapped[int] = mapped_column()
    buyer_fee: Mapped[int] = mapped_column()
    seller_fee: Mapped[int] = mapped_column()
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
