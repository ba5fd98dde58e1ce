"""Each revision may carry a message, like a commit message: what changed and why.

Revisions uploaded before this migration have none (NULL), which the API answers as `null`.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "revisions"
_COLUMN = "message"


def upgrade() -> None:
    """Add one nullable column with plain ALTER TABLE."""

    op.add_column(_TABLE, sa.Column(_COLUMN, sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop the column (SQLite >= 3.35 and PostgreSQL both ALTER TABLE ... DROP COLUMN)."""

    op.execute(f"ALTER TABLE {_TABLE} DROP COLUMN {_COLUMN}")
