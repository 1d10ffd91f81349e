"""Trading: market sequence state, orders, trades.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the trading tables."""
    op.create_table(
        "market_state",
        sa.Column("market", sa.String(32), nullable=False),
        sa.Column("next_seq", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("market", name="pk_market_state"),
    )
    op.create_table(
        "orders",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("market", sa.String(32), nullable=False),
        sa.Column("member_id", BIGINT, nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("type", sa.String(8), nullable=False),
        sa.Column("tif", sa.String(16), nullable=False),
        sa.Column("price", BIGINT, nullable=False),
        sa.Column("quantity", BIGINT, nullable=False),
        sa.Column("remaining", BIGINT, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("priority", BIGINT, nullable=True),
        sa.Column("hold_id", BIGINT, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("remaining >= 0", name="ck_orders_remaining_not_negative"),
        sa.ForeignKeyConstraint(["hold_id"], ["holds.id"], name="fk_orders_hold_id_holds"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name="fk_orders_member_id_members"),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
    )
    op.create_index("ix_orders_market_status", "orders", ["market", "status"])
    op.create_index("ix_orders_member_id", "orders", ["member_id"])
    op.create_table(
        "trades",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("market", sa.String(32), nullable=False),
        sa.Column("seq", BIGINT, nullable=False),
        sa.Column("maker_order_id", BIGINT, nullable=False),
        sa.Column("taker_order_id", BIGINT, nullable=False),
        sa.Column("buyer_id", BIGINT, nullable=False),
        sa.Column("seller_id", BIGINT, nullable=False),
        sa.Column("taker_side", sa.String(4), nullable=False),
        sa.Column("price", BIGINT, nullable=False),
        sa.Column("quantity", BIGINT, nullable=False),
        sa.Column("base_amount", BIGINT, nullable=False),
        sa.Column("quote_amount", BIGINT, nullable=False),
        sa.Column("buyer_fee", BIGINT, nullable=False),
        sa.Column("seller_fee", BIGINT, nullable=False),
        sa.Column("entry_id", BIGINT, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["buyer_id"], ["members.id"], name="fk_trades_buyer_id_members"),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name="fk_trades_entry_id_journal_entries"
        ),
        sa.ForeignKeyConstraint(
            ["maker_order_id"], ["orders.id"], name="fk_trades_maker_order_id_orders"
        ),
        sa.ForeignKeyConstraint(["seller_id"], ["members.id"], name="fk_trades_seller_id_members"),
        sa.ForeignKeyConstraint(
            ["taker_order_id"], ["orders.id"], name="fk_trades_taker_order_id_orders"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_trades"),
        sa.UniqueConstraint("market", "seq", name="uq_trades_market_seq"),
    )
    op.create_index("ix_trades_buyer_id", "trades", ["buyer_id"])
    op.create_index("ix_trades_seller_id", "trades", ["seller_id"])


def downgrade() -> None:
    """Drop the trading tables."""
    op.drop_index("ix_trades_seller_id", table_name="trades")
    op.drop_index("ix_trades_buyer_id", table_name="trades")
    op.drop_table("trades")
    op.drop_index("ix_orders_member_id", table_name="orders")
    op.drop_index("ix_orders_market_status", table_name="orders")
    op.drop_table("orders")
    op.drop_table("market_state")
