"""Token lifecycle: a name to tell tokens apart, an optional expiry, and revocation.

Existing tokens get no name, no expiry and stay valid.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add three nullable columns to `api_tokens` (batch mode: SQLite copies the table)."""

    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Delete revoked and expiring tokens, then drop the columns.

    Older code cannot refuse them: keeping the rows would make a revoked token valid again and an
    expiring one valid forever.
    """

    op.execute("DELETE FROM api_tokens WHERE revoked_at IS NOT NULL OR expires_at IS NOT NULL")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("name")
