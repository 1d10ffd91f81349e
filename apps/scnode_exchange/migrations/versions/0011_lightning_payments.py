"""Lightning payments (LaaS): members paying BOLT11 invoices, through the node's Lightning API
or settled internally when the invoice is another member's deposit invoice.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the Lightning payment table."""
    op.create_table(
        "lightning_payments",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("member_id", BIGINT, nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("bolt11", sa.Text(), nullable=False),
        sa.Column("payment_hash", sa.String(64), nullable=False),
        sa.Column("destination", sa.String(66), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("amount_msat", BIGINT, nullable=False),
        sa.Column("amount_sats", BIGINT, nullable=False),
        sa.Column("max_fee_sats", BIGINT, nullable=False),
        sa.Column("fee_sats", BIGINT, nullable=True),
        sa.Column("fee_msat", BIGINT, nullable=True),
        sa.Column("hold_id", BIGINT, nullable=True),
        sa.Column("send_key", sa.String(64), nullable=True),
        sa.Column("api_state", sa.String(16), nullable=True),
        sa.Column("preimage", sa.String(64), nullable=True),
        sa.Column("payee_member_id", BIGINT, nullable=True),
        sa.Column("invoice_id", BIGINT, nullable=True),
        sa.Column("entry_id", BIGINT, nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("completed_at", TS, nullable=True),
        sa.CheckConstraint(
            "state IN ('reserved', 'sending', 'complete', 'failed')",
            name="ck_lightning_payments_known_state",
        ),
        sa.CheckConstraint(
            "kind IN ('external', 'internal')", name="ck_lightning_payments_known_kind"
        ),
        sa.CheckConstraint(
            "amount_msat > 0 AND amount_sats > 0 AND max_fee_sats >= 0",
            name="ck_lightning_payments_amounts_positive",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_lightning_payments_member_id_members"
        ),
        sa.ForeignKeyConstraint(
            ["payee_member_id"],
            ["members.id"],
            name="fk_lightning_payments_payee_member_id_members",
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["holds.id"], name="fk_lightning_payments_hold_id_holds"
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["lightning_invoices.id"],
            name="fk_lightning_payments_invoice_id_lightning_invoices",
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.id"],
            name="fk_lightning_payments_entry_id_journal_entries",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_lightning_payments"),
        sa.UniqueConstraint(
            "member_id", "idempotency_key", name="uq_lightning_payments_member_id_idempotency_key"
        ),
        sa.UniqueConstraint("send_key", name="uq_lightning_payments_send_key"),
    )
    op.create_index("ix_lightning_payments_state", "lightning_payments", ["state"])
    op.create_index(
        "ix_lightning_payments_member_id_created_at",
        "lightning_payments",
        ["member_id", "created_at"],
    )
    op.create_index("ix_lightning_payments_payment_hash", "lightning_payments", ["payment_hash"])


def downgrade() -> None:
    """Drop the Lightning payment table."""
    op.drop_index("ix_lightning_payments_payment_hash", table_name="lightning_payments")
    op.drop_index("ix_lightning_payments_member_id_created_at", table_name="lightning_payments")
    op.drop_index("ix_lightning_payments_state", table_name="lightning_payments")
    op.drop_table("lightning_payments")
