"""Withdrawals: requests and their state machine.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Placeholder in the revision chain (no schema change yet): the tables arrive with the code that
uses them, in this same file.
"""

from __future__ import annotations

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """No schema change yet."""


def downgrade() -> None:
    """No schema change yet."""
