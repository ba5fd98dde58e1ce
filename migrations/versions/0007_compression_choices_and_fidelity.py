"""Each revision records how it was compressed and how close it stayed: factorisation, scale and
fidelity (relative error and cosine of the update, min / mean / max over its modules).

Revisions before this migration were compressed as trained with the paper's per-tensor scale
("entry"; one given alpha cannot be told apart from it afterwards) and were not measured, so
their fidelity columns stay NULL.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FIDELITY = ("error_min", "error_mean", "error_max", "cosine_min", "cosine_mean", "cosine_max")


def upgrade() -> None:
    """Add the columns with plain ALTER TABLE (a batch rebuild would be needless here)."""

    op.add_column(
        "revisions",
        sa.Column("factorisation", sa.String(16), server_default="as-trained", nullable=False),
    )
    op.add_column(
        "revisions", sa.Column("scale", sa.String(16), server_default="entry", nullable=False)
    )
    for column in _FIDELITY:
        op.add_column("revisions", sa.Column(column, sa.Double(), nullable=True))


def downgrade() -> None:
    """Drop the columns (SQLite >= 3.35 and PostgreSQL both ALTER TABLE ... DROP COLUMN)."""

    for column in ("factorisation", "scale", *_FIDELITY):
        op.execute(f"ALTER TABLE revisions DROP COLUMN {column}")
