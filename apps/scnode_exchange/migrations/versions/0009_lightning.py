"""Lightning deposits (LaaS): invoices made for members and the Lightning API event cursor.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the Lightning deposit tables."""
    op.create_table(
        "lightning_invoices",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("member_id", BIGINT, nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("payment_hash", sa.String(64), nullable=False),
        sa.Column("bolt11", sa.Text(), nullable=False),
        sa.Column("amount_sats", BIGINT, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("amount_received_msat", BIGINT, nullable=True),
        sa.Column("credited_sats", BIGINT, nullable=True),
        sa.Column("credit_entry_id", BIGINT, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("credited_at", TS, nullable=True),
        sa.CheckConstraint("amount_sats > 0", name="ck_lightning_invoices_amount_positive"),
        sa.CheckConstraint(
            "state IN ('unpaid', 'credited', 'expired')", name="ck_lightning_invoices_known_state"
        ),
        sa.ForeignKeyConstraint(
            ["credit_entry_id"],
            ["journal_entries.id"],
            name="fk_lightning_invoices_credit_entry_id_journal_entries",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_lightning_invoices_member_id_members"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_lightning_invoices"),
        sa.UniqueConstraint("payment_hash", name="uq_lightning_invoices_payment_hash"),
        sa.UniqueConstraint(
            "member_id", "idempotency_key", name="uq_lightning_invoices_member_id_idempotency_key"
        ),
    )
    op.create_index("ix_lightning_invoices_member_id", "lightning_invoices", ["member_id", "id"])
    op.create_index("ix_lightning_invoices_state", "lightning_invoices", ["state"])
    op.create_table(
        "lightning_cursors",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("cursor", BIGINT, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_lightning_cursors"),
    )


def downgrade() -> None:
    """Drop the Lightning deposit tables."""
    op.drop_table("lightning_cursors")
    op.drop_index("ix_lightning_invoices_state", table_name="lightning_invoices")
    op.drop_index("ix_lightning_invoices_member_id", table_name="lightning_invoices")
    op.drop_table("lightning_invoices")
