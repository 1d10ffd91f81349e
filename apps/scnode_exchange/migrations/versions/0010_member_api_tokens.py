"""Members' API tokens (the mobile app): named, scoped, revocable, stored as SHA-256.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the member API token table."""
    op.create_table(
        "member_api_tokens",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("member_id", BIGINT, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_member_api_tokens_member_id_members"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_member_api_tokens"),
    )
    op.create_index("ix_member_api_tokens_member_id", "member_api_tokens", ["member_id", "id"])


def downgrade() -> None:
    """Drop the member API token table."""
    op.drop_index("ix_member_api_tokens_member_id", table_name="member_api_tokens")
    op.drop_table("member_api_tokens")
