"""Each revision keeps its model card (the adapter folder's README.md), its license id and the
data sets it was trained on (a table, like tags, so listings and search filter on them).

Revisions uploaded before this migration have none of them (NULL, no rows).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Two nullable columns (one indexed) and one table, with plain DDL."""

    op.add_column("revisions", sa.Column("license", sa.String(length=64), nullable=True))
    op.add_column("revisions", sa.Column("model_card", sa.Text(), nullable=True))
    op.create_index(op.f("ix_revisions_license"), "revisions", ["license"], unique=False)
    op.create_table(
        "revision_datasets",
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["revisions.id"],
            name=op.f("fk_revision_datasets_revision_id_revisions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("revision_id", "dataset", name=op.f("pk_revision_datasets")),
    )
    op.create_index(
        op.f("ix_revision_datasets_dataset"), "revision_datasets", ["dataset"], unique=False
    )


def downgrade() -> None:
    """Drop the table, the index and the columns (their data is lost)."""

    op.drop_index(op.f("ix_revision_datasets_dataset"), table_name="revision_datasets")
    op.drop_table("revision_datasets")
    op.drop_index(op.f("ix_revisions_license"), table_name="revisions")
    op.execute("ALTER TABLE revisions DROP COLUMN model_card")
    op.execute("ALTER TABLE revisions DROP COLUMN license")
