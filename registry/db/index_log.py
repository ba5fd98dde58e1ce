"""The version counter and change log that keep every API process's search index in step with SQL.

Guarantee, on SQLite and PostgreSQL: versions become visible in the order they were taken, so a
reader that sees version V also sees every change logged under a version <= V. `record_changes`
takes the next version with an upsert on the single `index_state` row, and that row stays locked
until the writing transaction ends (SQLite: one writer at a time anyway), so a transaction cannot
take V+1 before the one holding V has committed or rolled back.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from registry.db.engine import upsert
from registry.db.models import IndexChange, IndexState

STATE_ROW = 1


def record_changes(session: Session, expert_ids: Collection[int]) -> int:
    """Log that `expert_ids` changed, under a new version, in the caller's transaction.

    Call it last before the commit: the counter's lock is then held for the commit only.
    Returns the new version.
    """
    version: int = session.execute(
        upsert(session, IndexState)
        .values(id=STATE_ROW, version=1)
        .on_conflict_do_update(
            index_elements=[IndexState.id], set_={"version": IndexState.version + 1}
        )
        .returning(IndexState.version)
    ).scalar_one()
    session.add_all(IndexChange(version=version, expert_id=expert_id) for expert_id in expert_ids)
    return version


def current_version(session: Session) -> int:
    """The latest committed version (0 before the first change): one primary-key lookup."""
    version = session.scalar(select(IndexState.version).where(IndexState.id == STATE_ROW))
    return version or 0


def changed_since(version: int) -> Select[tuple[int]]:
    """The ids of experts changed after `version` (a subquery; may repeat an id)."""
    return select(IndexChange.expert_id).where(IndexChange.version > version)
