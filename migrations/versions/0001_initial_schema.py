"""Initial schema: users, API tokens, experts, immutable revisions and their tags.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create every table from nothing."""

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("lookup_id", sa.String(length=32), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("lookup_id", name=op.f("uq_api_tokens_lookup_id")),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_tokens_user_id"), ["user_id"], unique=False)

    op.create_table(
        "experts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("latest_revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_experts_owner_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experts")),
    )
    with op.batch_alter_table("experts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_experts_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(
            "uq_experts_live_owner_name",
            ["owner_id", "name"],
            unique=True,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )

    op.create_table(
        "revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("expert_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("blob_size", sa.BigInteger(), nullable=False),
        sa.Column("blob_missing", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("original_size", sa.BigInteger(), nullable=False),
        sa.Column("original_dtype", sa.String(length=32), nullable=False),
        sa.Column("num_params", sa.BigInteger(), nullable=False),
        sa.Column("density", sa.Double(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("sigma_min", sa.Double(), nullable=False),
        sa.Column("sigma_mean", sa.Double(), nullable=False),
        sa.Column("sigma_max", sa.Double(), nullable=False),
        sa.Column("alpha_min", sa.Double(), nullable=False),
        sa.Column("alpha_mean", sa.Double(), nullable=False),
        sa.Column("alpha_max", sa.Double(), nullable=False),
        sa.Column("base_model", sa.String(length=512), nullable=True),
        sa.Column("peft_type", sa.String(length=32), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("lora_alpha", sa.Double(), nullable=True),
        sa.Column("target_modules", sa.JSON(), nullable=False),
        sa.Column("adapter_config", sa.Text(), nullable=False),
        sa.Column("task_description", sa.Text(), nullable=False),
        sa.Column("sample_inputs", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["expert_id"], ["experts.id"], name=op.f("fk_revisions_expert_id_experts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revisions")),
        sa.UniqueConstraint("expert_id", "number", name="uq_revisions_expert_number"),
    )
    with op.batch_alter_table("revisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revisions_base_model"), ["base_model"], unique=False)
        batch_op.create_index(batch_op.f("ix_revisions_blob_sha256"), ["blob_sha256"], unique=False)
        batch_op.create_index(batch_op.f("ix_revisions_expert_id"), ["expert_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_revisions_peft_type"), ["peft_type"], unique=False)

    op.create_table(
        "revision_tags",
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["revisions.id"],
            name=op.f("fk_revision_tags_revision_id_revisions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("revision_id", "tag", name=op.f("pk_revision_tags")),
    )
    with op.batch_alter_table("revision_tags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revision_tags_tag"), ["tag"], unique=False)


def downgrade() -> None:
    """Drop every table (data is lost)."""

    with op.batch_alter_table("revision_tags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revision_tags_tag"))

    op.drop_table("revision_tags")
    with op.batch_alter_table("revisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revisions_peft_type"))
        batch_op.drop_index(batch_op.f("ix_revisions_expert_id"))
        batch_op.drop_index(batch_op.f("ix_revisions_blob_sha256"))
        batch_op.drop_index(batch_op.f("ix_revisions_base_model"))

    op.drop_table("revisions")
    with op.batch_alter_table("experts", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_experts_live_owner_name",
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_experts_owner_id"))

    op.drop_table("experts")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_user_id"))

    op.drop_table("api_tokens")
    op.drop_table("users")
