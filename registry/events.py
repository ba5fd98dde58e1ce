"""The seam through which other components (search indexing) learn about registry writes.

Listeners are called after the SQL commit, with plain data (no ORM objects, no session). SQL stays
the source of truth: a listener that fails is logged and does not undo or fail the request, so an
index can always be rebuilt from the database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RevisionCommitted:
    """A new revision is visible to readers."""

    owner: str
    name: str
    revision: int
    base_model: str | None
    peft_type: str
    task_description: str
    sample_inputs: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class ExpertDeleted:
    """An expert was soft-deleted; none of its revisions may be served any more."""

    owner: str
    name: str


class RegistryListener(Protocol):
    """What a search index (or any observer) implements to follow the registry."""

    def revision_committed(self, event: RevisionCommitted) -> None: ...

    def expert_deleted(self, event: ExpertDeleted) -> None: ...


def notify(listeners: Sequence[RegistryListener], event: RevisionCommitted | ExpertDeleted) -> None:
    """Deliver `event` to every listener; a failing listener is logged, the others still run."""
    for listener in listeners:
        try:
            if isinstance(event, RevisionCommitted):
                listener.revision_committed(event)
            else:
                listener.expert_deleted(event)
        except Exception:
            logger.exception("registry listener %r failed on %r", listener, event)
