"""Each task embedding gains the embedding of the task description alone.

Rows made before this migration have none (NULL): their experts stay searchable, with a
description part of 0 for word queries, until `compeft-hub reembed` computes their vectors.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "revision_embeddings"
_COLUMN = "description_vector"


def upgrade() -> None:
    """Add one nullable column with plain ALTER TABLE."""

    op.add_column(_TABLE, sa.Column(_COLUMN, sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    """Drop the column (SQLite >= 3.35 and PostgreSQL both ALTER TABLE ... DROP COLUMN)."""

    op.execute(f"ALTER TABLE {_TABLE} DROP COLUMN {_COLUMN}")
