"""Search index: task embeddings of revisions, the index version counter and its change log.

Experts uploaded before this version have no embedding and stay out of search results until
`compeft-hub reembed` runs (the migration cannot embed: that needs the model).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the three tables; existing tables are untouched."""

    op.create_table(
        "index_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_index_state_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_index_state")),
    )
    op.create_table(
        "index_changes",
        sa.Column("version", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("expert_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["expert_id"], ["experts.id"], name=op.f("fk_index_changes_expert_id_experts")
        ),
        sa.PrimaryKeyConstraint("version", "expert_id", name=op.f("pk_index_changes")),
    )
    op.create_table(
        "revision_embeddings",
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("embedder", sa.String(length=128), nullable=False),
        sa.Column("embedder_version", sa.String(length=128), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["revisions.id"],
            name=op.f("fk_revision_embeddings_revision_id_revisions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("revision_id", name=op.f("pk_revision_embeddings")),
    )


def downgrade() -> None:
    """Drop the three tables (embeddings are lost; `compeft-hub reembed` recomputes them)."""

    op.drop_table("revision_embeddings")
    op.drop_table("index_changes")
    op.drop_table("index_state")
