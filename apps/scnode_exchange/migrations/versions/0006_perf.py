"""Durable-path indexes (reserved).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

Placeholder in the revision chain (no schema change yet): the tables arrive with the code that
uses them, in this same file.
"""

from __future__ import annotations

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """No schema change yet."""


def downgrade() -> None:
    """No schema change yet."""
