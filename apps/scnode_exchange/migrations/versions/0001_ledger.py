"""Ledger: assets, members, accounts, journal entries, postings, holds.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the ledger tables."""
    op.create_table(
        "assets",
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("decimals", BIGINT, nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_assets"),
    )
    op.create_table(
        "members",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("handle", sa.String(128), nullable=False),
        sa.Column("frozen", sa.Boolean(), nullable=False),
        sa.Column("frozen_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_members"),
        sa.UniqueConstraint("handle", name="uq_members_handle"),
    )
    op.create_table(
        "accounts",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("member_id", BIGINT, nullable=True),
        sa.Column("system_name", sa.String(32), nullable=True),
        sa.Column("balance", BIGINT, nullable=False),
        sa.Column("reserved", BIGINT, nullable=False),
        sa.CheckConstraint(
            "(member_id IS NULL) <> (system_name IS NULL)", name="ck_accounts_member_xor_system"
        ),
        sa.CheckConstraint(
            "member_id IS NULL OR (balance >= 0 AND reserved >= 0 AND reserved <= balance)",
            name="ck_accounts_member_not_negative",
        ),
        sa.ForeignKeyConstraint(["asset"], ["assets.code"], name="fk_accounts_asset_assets"),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_accounts_member_id_members"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("asset", "member_id", name="uq_accounts_asset_member_id"),
        sa.UniqueConstraint("asset", "system_name", name="uq_accounts_asset_system_name"),
    )
    op.create_table(
        "journal_entries",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reference", sa.String(200), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_journal_entries"),
        sa.UniqueConstraint("reference", name="uq_journal_entries_reference"),
    )
    op.create_table(
        "postings",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("entry_id", BIGINT, nullable=False),
        sa.Column("account_id", BIGINT, nullable=False),
        sa.Column("amount", BIGINT, nullable=False),
        sa.CheckConstraint("amount <> 0", name="ck_postings_nonzero"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_postings_account_id_accounts"
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name="fk_postings_entry_id_journal_entries"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_postings"),
    )
    op.create_index("ix_postings_account_id", "postings", ["account_id"])
    op.create_index("ix_postings_entry_id", "postings", ["entry_id"])
    op.create_table(
        "holds",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("account_id", BIGINT, nullable=False),
        sa.Column("amount", BIGINT, nullable=False),
        sa.Column("remaining", BIGINT, nullable=False),
        sa.Column("reference", sa.String(200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "remaining >= 0 AND remaining <= amount", name="ck_holds_remaining_in_range"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_holds_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_holds"),
        sa.UniqueConstraint("reference", name="uq_holds_reference"),
    )
    op.create_index("ix_holds_account_id_open", "holds", ["account_id", "is_open"])


def downgrade() -> None:
    """Drop the ledger tables."""
    op.drop_index("ix_holds_account_id_open", table_name="holds")
    op.drop_table("holds")
    op.drop_index("ix_postings_entry_id", table_name="postings")
    op.drop_index("ix_postings_account_id", table_name="postings")
    op.drop_table("postings")
    op.drop_table("journal_entries")
    op.drop_table("accounts")
    op.drop_table("members")
    op.drop_table("assets")
