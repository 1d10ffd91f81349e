"""Member API and owner operations: the owner's append-only audit log.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

Member sessions are stateless signed tokens (no table); see ``scnode_exchange.api.auth``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the owner audit log."""
    op.create_table(
        "owner_audit_log",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("member_id", BIGINT, nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("entry_id", BIGINT, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name="fk_owner_audit_log_entry_id_journal_entries"
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_owner_audit_log_member_id_members"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_owner_audit_log"),
    )
    op.create_index("ix_owner_audit_log_member_id", "owner_audit_log", ["member_id"])


def downgrade() -> None:
    """Drop the owner audit log."""
    op.drop_index("ix_owner_audit_log_member_id", table_name="owner_audit_log")
    op.drop_table("owner_audit_log")
