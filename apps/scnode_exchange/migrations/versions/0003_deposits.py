"""Deposits: deposit addresses, observed chain outputs and their credit state, reorg alerts,
the watcher's event cursor per chain.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the deposit tables."""
    op.create_table(
        "deposit_addresses",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("member_id", BIGINT, nullable=False),
        sa.Column("chain", sa.String(32), nullable=False),
        sa.Column("address", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_deposit_addresses_member_id_members"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_deposit_addresses"),
        sa.UniqueConstraint("chain", "address", name="uq_deposit_addresses_chain_address"),
    )
    op.create_index(
        "ix_deposit_addresses_member_chain", "deposit_addresses", ["member_id", "chain"]
    )
    op.create_table(
        "deposits",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("chain", sa.String(32), nullable=False),
        sa.Column("txid", sa.String(64), nullable=False),
        sa.Column("vout", BIGINT, nullable=False),
        sa.Column("member_id", BIGINT, nullable=False),
        sa.Column("address", sa.String(128), nullable=False),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("amount", BIGINT, nullable=False),
        sa.Column("confirmations", BIGINT, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("block_hash", sa.String(64), nullable=True),
        sa.Column("block_height", BIGINT, nullable=True),
        sa.Column("credited_block_hash", sa.String(64), nullable=True),
        sa.Column("credit_entry_id", BIGINT, nullable=True),
        sa.Column("reversal_entry_id", BIGINT, nullable=True),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("credited_at", TS, nullable=True),
        sa.Column("reversed_at", TS, nullable=True),
        sa.CheckConstraint("amount > 0", name="ck_deposits_amount_positive"),
        sa.CheckConstraint(
            "state IN ('pending', 'credited', 'reorged', 'suspense')",
            name="ck_deposits_known_state",
        ),
        sa.ForeignKeyConstraint(["asset"], ["assets.code"], name="fk_deposits_asset_assets"),
        sa.ForeignKeyConstraint(
            ["credit_entry_id"],
            ["journal_entries.id"],
            name="fk_deposits_credit_entry_id_journal_entries",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_deposits_member_id_members"
        ),
        sa.ForeignKeyConstraint(
            ["reversal_entry_id"],
            ["journal_entries.id"],
            name="fk_deposits_reversal_entry_id_journal_entries",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_deposits"),
        sa.UniqueConstraint("chain", "txid", "vout", name="uq_deposits_chain_txid_vout"),
    )
    op.create_index("ix_deposits_member_id", "deposits", ["member_id", "id"])
    op.create_index("ix_deposits_chain_state", "deposits", ["chain", "state"])
    op.create_table(
        "deposit_alerts",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("deposit_id", BIGINT, nullable=False),
        sa.Column("member_id", BIGINT, nullable=False),
        sa.Column("chain", sa.String(32), nullable=False),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("amount", BIGINT, nullable=False),
        sa.Column("taken_from_member", BIGINT, nullable=False),
        sa.Column("receivable", BIGINT, nullable=False),
        sa.Column("member_frozen", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("resolved_by", sa.String(128), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["deposit_id"], ["deposits.id"], name="fk_deposit_alerts_deposit_id_deposits"
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_deposit_alerts_member_id_members"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_deposit_alerts"),
        sa.UniqueConstraint("deposit_id", name="uq_deposit_alerts_deposit_id"),
    )
    op.create_index("ix_deposit_alerts_resolved_at", "deposit_alerts", ["resolved_at"])
    op.create_table(
        "deposit_cursors",
        sa.Column("chain", sa.String(32), nullable=False),
        sa.Column("cursor", BIGINT, nullable=False),
        sa.Column("tip_height", BIGINT, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("chain", name="pk_deposit_cursors"),
    )


def downgrade() -> None:
    """Drop the deposit tables."""
    op.drop_table("deposit_cursors")
    op.drop_index("ix_deposit_alerts_resolved_at", table_name="deposit_alerts")
    op.drop_table("deposit_alerts")
    op.drop_index("ix_deposits_chain_state", table_name="deposits")
    op.drop_index("ix_deposits_member_id", table_name="deposits")
    op.drop_table("deposits")
    op.drop_index("ix_deposit_addresses_member_chain", table_name="deposit_addresses")
    op.drop_table("deposit_addresses")
