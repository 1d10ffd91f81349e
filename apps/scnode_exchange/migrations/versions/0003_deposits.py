"""Deposits: deposit addresses, observed chain outputs and their credit state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Placeholder in the revision chain (no schema change yet): the tables arrive with the code that
uses them, in this same file.
"""

from __future__ import annotations

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """No schema change yet."""


def downgrade() -> None:
    """No schema change yet."""
