"""Solvency: the alerts of the periodic check (node holdings vs member liabilities).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the solvency alert table."""
    op.create_table(
        "solvency_alerts",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("shortfall", BIGINT, nullable=False),
        sa.Column("holdings", BIGINT, nullable=False),
        sa.Column("liabilities", BIGINT, nullable=False),
        sa.Column("worst_shortfall", BIGINT, nullable=False),
        sa.Column("last_shortfall", BIGINT, nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("cleared_at", TS, nullable=True),
        sa.Column("cleared_margin", BIGINT, nullable=True),
        sa.ForeignKeyConstraint(["asset"], ["assets.code"], name="fk_solvency_alerts_asset_assets"),
        sa.PrimaryKeyConstraint("id", name="pk_solvency_alerts"),
    )
    op.create_index(
        "ix_solvency_alerts_asset_cleared_at", "solvency_alerts", ["asset", "cleared_at"]
    )


def downgrade() -> None:
    """Drop it again."""
    op.drop_index("ix_solvency_alerts_asset_cleared_at", table_name="solvency_alerts")
    op.drop_table("solvency_alerts")
