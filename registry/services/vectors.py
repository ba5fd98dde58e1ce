"""Task embeddings as the registry stores them: computed at upload, replaced by `reembed`.

A vector belongs to the space of the embedder (name and version) that made it. Only vectors of the
running embedder are searchable (see `search`); after the embedding model changes, `reembed`
brings every live expert's latest revision into the new space, batch by batch. Each embedding also
holds the lexical vector of the same texts (`retrieval.lexical`) and the vector of the description
alone (`retrieval.fusion`); a lexical vector from another recipe, or a missing one of either kind,
leaves the expert searchable with that part at 0 until `reembed` replaces it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session, selectinload

from registry.db.index_log import record_changes
from registry.db.models import Expert, Revision, RevisionEmbedding
from retrieval.embedder import TaskEmbedder, query_texts
from retrieval.errors import RetrievalError
from retrieval.fusion import SecondStage, weights_for
from retrieval.lexical import LEXICAL_VERSION, LexicalEncoder, LexicalVector

VECTOR_DTYPE = np.dtype("<f4")
logger = logging.getLogger(__name__)
REEMBED_BATCH = 256
_LEXICAL = LexicalEncoder()


@dataclass(frozen=True)
class TaskEmbedding:
    """A revision's task vectors and the recipes that made them, ready to be stored with it."""

    embedder: str
    embedder_version: str
    vector: np.ndarray
    lexical: LexicalVector
    description: np.ndarray

    def row(self) -> RevisionEmbedding:
        """A new row for `Revision.embedding` (float32 bytes, so every backend stores the same)."""
        vector = np.ascontiguousarray(self.vector, dtype=VECTOR_DTYPE)
        return RevisionEmbedding(
            embedder=self.embedder,
            embedder_version=self.embedder_version,
            dim=vector.size,
            vector=vector.tobytes(),
            lexical=self.lexical.to_bytes(),
            lexical_version=LEXICAL_VERSION,
            description_vector=np.ascontiguousarray(self.description, VECTOR_DTYPE).tobytes(),
        )


def embed_tasks(
    embedder: TaskEmbedder, tasks: Sequence[tuple[str, Sequence[str]]]
) -> list[TaskEmbedding]:
    """One TaskEmbedding per `(task description, sample inputs)`, in one model pass."""
    cards = embedder.embed_cards(tasks)
    return [
        TaskEmbedding(embedder.name, embedder.version, vector, terms, description)
        for vector, terms, description in zip(
            cards.tasks, lexical_vectors(embedder, tasks), cards.descriptions, strict=True
        )
    ]


def lexical_vectors(
    embedder: TaskEmbedder, tasks: Sequence[tuple[str, Sequence[str]]]
) -> list[LexicalVector]:
    """The lexical vectors of tasks, hashed from the texts `embedder` pools into their vectors."""
    return _LEXICAL.encode([embedder.task_texts(*task) for task in tasks])


def second_stage(query: str | None, examples: Sequence[str]) -> SecondStage:
    """The second stage of a search: the lexical vector of the texts its dense vector pools, and
    the weights tuned for its kind (with inputs, or words only)."""
    [vector] = _LEXICAL.encode([query_texts(query, examples)])
    return SecondStage(vector, weights_for(examples))


def decode_vector(data: bytes) -> np.ndarray:
    """The float32 vector stored by `TaskEmbedding.row`."""
    return np.frombuffer(data, dtype=VECTOR_DTYPE)


def decode_description(data: bytes | None, dim: int) -> np.ndarray | None:
    """The stored description vector when there is one and it is readable, else None."""
    if data is None:
        return None
    vector = decode_vector(data) if len(data) == dim * VECTOR_DTYPE.itemsize else None
    if vector is None or not np.all(np.isfinite(vector)) or not np.any(vector):
        logger.warning(
            "an unreadable description vector (%d bytes) is left out; its expert ranks without "
            "a description part",
            len(data),
        )
        return None
    return vector


def decode_lexical(data: bytes | None, version: str | None) -> LexicalVector | None:
    """The stored lexical vector when it is of the running recipe and readable, else None."""
    if data is None or version != LEXICAL_VERSION:
        return None
    try:
        return LexicalVector.from_bytes(data)
    except RetrievalError as exc:
        logger.warning(
            "an unreadable lexical vector is left out; its expert ranks on the dense part: %s", exc
        )
        return None


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
    current: int  # live experts whose vectors were already from this embedder and recipe


def reembed(
    session: Session,
    embedder: TaskEmbedder,
    *,
    batch_size: int = REEMBED_BATCH,
    on_batch: Callable[[int], object] | None = None,
) -> ReembedReport:
    """Embed, with `embedder`, each live expert's latest revision whose vectors are missing or
    stale (dense from another embedder, lexical from another recipe or none, no description
    vector).

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
            or_(
                RevisionEmbedding.revision_id.is_(None),
                ~is_current(embedder),
                RevisionEmbedding.lexical_version.is_distinct_from(LEXICAL_VERSION),
                RevisionEmbedding.description_vector.is_(None),
            ),
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
