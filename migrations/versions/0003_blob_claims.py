"""Blob claims: the writers of each blob between its put and their commit (see registry.services.blob_claims).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the table; it starts empty (no upload is in flight during a migration)."""

    op.create_table(
        "blob_claims",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("writers", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_blob_claims")),
    )


def downgrade() -> None:
    """Drop the table."""

    op.drop_table("blob_claims")
