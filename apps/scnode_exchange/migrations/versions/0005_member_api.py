"""Member API and owner operations: sessions, owner audit log.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

Placeholder in the revision chain (no schema change yet): the tables arrive with the code that
uses them, in this same file.
"""

from __future__ import annotations

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """No schema change yet."""


def downgrade() -> None:
    """No schema change yet."""
