"""Each revision records the delta codec of its blob (compeft, bitdelta, dare) and the magnitude
bits it stores per kept entry.

Revisions uploaded before this migration are ComPEFT's signs: `compeft`, 0 bits.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Two columns with server defaults, so existing rows read as ComPEFT's signs."""

    op.add_column(
        "revisions",
        sa.Column("codec", sa.String(length=16), server_default="compeft", nullable=False),
    )
    op.add_column(
        "revisions", sa.Column("value_bits", sa.Integer(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    """Drop both columns (their data is lost)."""

    for column in ("codec", "value_bits"):
        op.execute(f"ALTER TABLE revisions DROP COLUMN {column}")
