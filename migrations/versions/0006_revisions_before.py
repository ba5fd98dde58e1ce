"""Where a re-created expert's revision numbers start: `experts.revisions_before`.

A name re-created after a delete numbers its revisions after the deleted experts' (an immutable
revision URL never serves other bytes), so an expert's revision count is `latest_revision -
revisions_before`, known without counting its rows. Experts before this migration started at 0.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the column; every existing expert numbered its revisions from 1.

    Plain ALTER TABLE on both databases: a batch operation would rebuild the SQLite table and
    lose the expression indexes of migration 0005, which SQLite cannot reflect.
    """

    op.add_column(
        "experts", sa.Column("revisions_before", sa.Integer(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    """Drop the column (SQLite >= 3.35 and PostgreSQL both ALTER TABLE ... DROP COLUMN)."""

    op.execute("ALTER TABLE experts DROP COLUMN revisions_before")
