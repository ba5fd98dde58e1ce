"""Stored tags take the form new ones get: lower case, each run of spaces one `-`.

Tags are matched in that form from now on (`registry.wire.common.tag_form`), so `Summarization`
stored before would no longer be found. The rewrite runs in Python (SQLite's lower() only knows
ASCII); where a revision held two spellings of one tag (`QA` and `qa`) one row is kept. Not
reversible: the downgrade leaves the tags as they are.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TAGS = sa.table("revision_tags", sa.column("revision_id", sa.Integer), sa.column("tag", sa.String))


def _tag_form(text: str) -> str:
    """`registry.wire.common.tag_form` as of this migration (a migration never imports app code,
    which may change after it)."""
    return "-".join(part for part in text.strip().lower().split(" ") if part)


def upgrade() -> None:
    """Delete every tag row not in its form, then insert the forms each revision lacks."""

    connection = op.get_bind()
    rows = connection.execute(sa.select(_TAGS.c.revision_id, _TAGS.c.tag)).all()
    present = {(revision_id, tag) for revision_id, tag in rows}
    stale = [(revision_id, tag) for revision_id, tag in rows if _tag_form(tag) != tag]
    for revision_id, tag in stale:
        connection.execute(
            sa.delete(_TAGS).where(_TAGS.c.revision_id == revision_id, _TAGS.c.tag == tag)
        )
    wanted = {(revision_id, _tag_form(tag)) for revision_id, tag in stale} - present
    if wanted:
        connection.execute(
            sa.insert(_TAGS), [{"revision_id": rid, "tag": tag} for rid, tag in sorted(wanted)]
        )


def downgrade() -> None:
    """Nothing to undo: the tags' former spellings are not kept."""
