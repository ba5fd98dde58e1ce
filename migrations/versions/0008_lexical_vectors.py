"""Each task embedding gains the lexical vector of the same texts (hashed character n-grams).

Rows made before this migration have none (NULL): their experts stay searchable on the dense
score alone, with a lexical part of 0, until `compeft-hub reembed` computes their vectors.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "revision_embeddings"


def upgrade() -> None:
    """Add two nullable columns with plain ALTER TABLE."""

    op.add_column(_TABLE, sa.Column("lexical", sa.LargeBinary(), nullable=True))
    op.add_column(_TABLE, sa.Column("lexical_version", sa.String(128), nullable=True))


def downgrade() -> None:
    """Drop the columns (SQLite >= 3.35 and PostgreSQL both ALTER TABLE ... DROP COLUMN)."""

    for column in ("lexical", "lexical_version"):
        op.execute(f"ALTER TABLE {_TABLE} DROP COLUMN {column}")
