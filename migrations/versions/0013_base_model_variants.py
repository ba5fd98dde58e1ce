"""Each revision may say which variant of its base model the expert was trained on:
`full-precision`, or the base's quantisation (`rtn-4bit-g128`, `nf4`, ...), as QLoRA-style
experts are trained on a quantised copy.

Revisions uploaded before this migration do not say (NULL).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_revisions_base_model_variant"


def upgrade() -> None:
    """One nullable, indexed column with plain DDL."""

    op.add_column("revisions", sa.Column("base_model_variant", sa.String(length=64), nullable=True))
    op.create_index(op.f(_INDEX), "revisions", ["base_model_variant"], unique=False)


def downgrade() -> None:
    """Drop the index and the column (its data is lost)."""

    op.drop_index(op.f(_INDEX), table_name="revisions")
    op.execute("ALTER TABLE revisions DROP COLUMN base_model_variant")
