"""Mining: worker registry, pool payouts and their split.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the mining tables."""
    op.create_table(
        "mining_workers",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("pool", sa.String(8), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("member_id", BIGINT, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("pool IN ('btc', 'azc')", name="ck_mining_workers_known_pool"),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_mining_workers_member_id_members"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_mining_workers"),
        sa.UniqueConstraint("pool", "name", name="uq_mining_workers_pool_name"),
    )
    op.create_index("ix_mining_workers_member_id", "mining_workers", ["member_id"])
    op.create_table(
        "mining_payouts",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("pool", sa.String(8), nullable=False),
        sa.Column("payout_id", sa.String(128), nullable=False),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("amount", BIGINT, nullable=False),
        sa.Column("confirmations", BIGINT, nullable=False),
        sa.Column("coinbase", sa.Boolean(), nullable=False),
        sa.Column("window_start", BIGINT, nullable=False),
        sa.Column("window_end", BIGINT, nullable=False),
        sa.Column("fee_bps", BIGINT, nullable=False),
        sa.Column("fee", BIGINT, nullable=False),
        sa.Column("members_amount", BIGINT, nullable=False),
        sa.Column("unattributed_amount", BIGINT, nullable=False),
        sa.Column("remainder", BIGINT, nullable=False),
        sa.Column("total_work", sa.Float(), nullable=False),
        sa.Column("unattributed_work", sa.Float(), nullable=False),
        sa.Column("entry_id", BIGINT, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("amount > 0", name="ck_mining_payouts_amount_positive"),
        sa.CheckConstraint("pool IN ('btc', 'azc')", name="ck_mining_payouts_known_pool"),
        sa.CheckConstraint(
            "fee + members_amount + unattributed_amount + remainder = amount",
            name="ck_mining_payouts_parts_sum",
        ),
        sa.ForeignKeyConstraint(["asset"], ["assets.code"], name="fk_mining_payouts_asset_assets"),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name="fk_mining_payouts_entry_id_journal_entries"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_mining_payouts"),
        sa.UniqueConstraint("pool", "payout_id", name="uq_mining_payouts_pool_payout_id"),
    )
    op.create_table(
        "mining_payout_work",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("payout_id", BIGINT, nullable=False),
        sa.Column("worker", sa.String(128), nullable=False),
        sa.Column("member_id", BIGINT, nullable=True),
        sa.Column("work", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_mining_payout_work_member_id_members"
        ),
        sa.ForeignKeyConstraint(
            ["payout_id"],
            ["mining_payouts.id"],
            name="fk_mining_payout_work_payout_id_mining_payouts",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_mining_payout_work"),
        sa.UniqueConstraint("payout_id", "worker", name="uq_mining_payout_work_payout_id_worker"),
    )
    op.create_index("ix_mining_payout_work_unknown", "mining_payout_work", ["member_id", "worker"])
    op.create_table(
        "mining_payout_parts",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("payout_id", BIGINT, nullable=False),
        sa.Column("member_id", BIGINT, nullable=False),
        sa.Column("work", sa.Float(), nullable=False),
        sa.Column("amount", BIGINT, nullable=False),
        sa.CheckConstraint("amount >= 0", name="ck_mining_payout_parts_amount_not_negative"),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_mining_payout_parts_member_id_members"
        ),
        sa.ForeignKeyConstraint(
            ["payout_id"],
            ["mining_payouts.id"],
            name="fk_mining_payout_parts_payout_id_mining_payouts",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_mining_payout_parts"),
        sa.UniqueConstraint(
            "payout_id", "member_id", name="uq_mining_payout_parts_payout_id_member_id"
        ),
    )
    op.create_index(
        "ix_mining_payout_parts_member_id", "mining_payout_parts", ["member_id", "payout_id"]
    )


def downgrade() -> None:
    """Drop the mining tables."""
    op.drop_index("ix_mining_payout_parts_member_id", table_name="mining_payout_parts")
    op.drop_table("mining_payout_parts")
    op.drop_index("ix_mining_payout_work_unknown", table_name="mining_payout_work")
    op.drop_table("mining_payout_work")
    op.drop_table("mining_payouts")
    op.drop_index("ix_mining_workers_member_id", table_name="mining_workers")
    op.drop_table("mining_workers")
