"""Task embeddings as the registry stores them: computed at upload, replaced by `reembed`.

A vector belongs to the space of the embedder (name and version) that made it. Only vectors of the
running embedder are searchable (see `search`); after the embedding model changes, `reembed`
brings every live expert's latest revision into the new space, batch by batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session, selectinload

from registry.db.index_log import record_changes
from registry.db.models import Expert, Revision, RevisionEmbedding
from retrieval.embedder import TaskEmbedder

VECTOR_DTYPE = np.dtype("<f4")
REEMBED_BATCH = 256


@dataclass(frozen=True)
class TaskEmbedding:
    """A revision's task vector and the embedder that made it, ready to be stored with it."""

    embedder: str
    embedder_version: str
    vector: np.ndarray

    def row(self) -> RevisionEmbedding:
        """A new row for `Revision.embedding` (float32 bytes, so every backend stores the same)."""
        vector = np.ascontiguousarray(self.vector, dtype=VECTOR_DTYPE)
        return RevisionEmbedding(
            embedder=self.embedder,
            embedder_version=self.embedder_version,
            dim=vector.size,
            vector=vector.tobytes(),
        )


def embed_tasks(
    embedder: TaskEmbedder, tasks: Sequence[tuple[str, Sequence[str]]]
) -> list[TaskEmbedding]:
    """One TaskEmbedding per `(task description, sample inputs)`, in one model pass."""
    vectors = embedder.embed_tasks(tasks)
    return [TaskEmbedding(embedder.name, embedder.version, vector) for vector in vectors]


def decode_vector(data: bytes) -> np.ndarray:
    """The float32 vector stored by `TaskEmbedding.row`."""
    return np.frombuffer(data, dtype=VECTOR_DTYPE)


def is_current(embedder: TaskEmbedder) -> ColumnElement[bool]:
    """SQL condition: the joined RevisionEmbedding was made by `embedder` (same vector space)."""
    return (
        (RevisionEmbedding.embedder == embedder.name)
        & (RevisionEmbedding.embedder_version == embedder.version)
        & (RevisionEmbedding.dim == embedder.dim)
    )


@dataclass(frozen=True)
class ReembedReport:
    """What `reembed` did, for the person who ran it."""

    embedded: int  # live experts whose latest revision got a new vector
    current: int  # live experts whose vector was already from this embedder


def reembed(
    session: Session,
    embedder: TaskEmbedder,
    *,
    batch_size: int = REEMBED_BATCH,
    on_batch: Callable[[int], object] | None = None,
) -> ReembedReport:
    """Embed, with `embedder`, each live expert's latest revision whose vector is missing or stale.

    Every batch commits with its index change, so API processes search the new vectors as they
    land, and an interrupted run resumes where it stopped. `on_batch` hears each batch's size.
    """
    live = session.scalar(
        select(func.count()).select_from(Expert).where(Expert.deleted_at.is_(None))
    )
    stale = (
        select(Revision)
        .select_from(Expert)
        .join(Expert.latest)
        .outerjoin(Revision.embedding)
        .options(selectinload(Revision.embedding))
        .where(
            Expert.deleted_at.is_(None),
            or_(RevisionEmbedding.revision_id.is_(None), ~is_current(embedder)),
        )
        .order_by(Revision.expert_id)
        .limit(batch_size)
    )
    embedded, last_expert_id = 0, 0
    while batch := list(session.scalars(stale.where(Revision.expert_id > last_expert_id))):
        vectors = embed_tasks(
            embedder, [(row.task_description, row.sample_inputs) for row in batch]
        )
        for revision, embedding in zip(batch, vectors, strict=True):
            revision.embedding = embedding.row()
        record_changes(session, [revision.expert_id for revision in batch])
        session.commit()
        embedded += len(batch)
        last_expert_id = batch[-1].expert_id
        if on_batch is not None:
            on_batch(len(batch))
    return ReembedReport(embedded=embedded, current=(live or 0) - embedded)
