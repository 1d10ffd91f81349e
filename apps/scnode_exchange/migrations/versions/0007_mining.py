"""Mining: worker registry, pool payouts and their split.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26

Placeholder in the revision chain (no schema change yet): the tables arrive with the code that
uses them, in this same file.
"""

from __future__ import annotations

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """No schema change yet."""


def downgrade() -> None:
    """No schema change yet."""
