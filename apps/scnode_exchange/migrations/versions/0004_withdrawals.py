"""Withdrawals: requests and their state machine.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the withdrawal tables."""
    op.create_table(
        "withdrawals",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("member_id", BIGINT, nullable=False),
        sa.Column("chain", sa.String(32), nullable=False),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("address", sa.String(128), nullable=False),
        sa.Column("amount", BIGINT, nullable=False),
        sa.Column("fee", BIGINT, nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("hold_id", BIGINT, nullable=True),
        sa.Column("send_key", sa.String(64), nullable=True),
        sa.Column("fee_rate_sat_vb", BIGINT, nullable=True),
        sa.Column("txid", sa.String(64), nullable=True),
        sa.Column("confirmations", BIGINT, nullable=False),
        sa.Column("network_fee", BIGINT, nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0 AND fee >= 0", name="ck_withdrawals_amounts_positive"),
        sa.ForeignKeyConstraint(["asset"], ["assets.code"], name="fk_withdrawals_asset_assets"),
        sa.ForeignKeyConstraint(["hold_id"], ["holds.id"], name="fk_withdrawals_hold_id_holds"),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_withdrawals_member_id_members"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_withdrawals"),
        sa.UniqueConstraint(
            "member_id", "idempotency_key", name="uq_withdrawals_member_id_idempotency_key"
        ),
        sa.UniqueConstraint("send_key", name="uq_withdrawals_send_key"),
    )
    op.create_index("ix_withdrawals_state", "withdrawals", ["state"])
    op.create_index(
        "ix_withdrawals_member_id_created_at", "withdrawals", ["member_id", "created_at"]
    )
    op.create_table(
        "withdrawal_events",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("withdrawal_id", BIGINT, nullable=False),
        sa.Column("from_state", sa.String(24), nullable=True),
        sa.Column("to_state", sa.String(24), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["withdrawal_id"],
            ["withdrawals.id"],
            name="fk_withdrawal_events_withdrawal_id_withdrawals",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_withdrawal_events"),
    )
    op.create_index("ix_withdrawal_events_withdrawal_id", "withdrawal_events", ["withdrawal_id"])


def downgrade() -> None:
    """Drop the withdrawal tables."""
    op.drop_index("ix_withdrawal_events_withdrawal_id", table_name="withdrawal_events")
    op.drop_table("withdrawal_events")
    op.drop_index("ix_withdrawals_member_id_created_at", table_name="withdrawals")
    op.drop_index("ix_withdrawals_state", table_name="withdrawals")
    op.drop_table("withdrawals")
