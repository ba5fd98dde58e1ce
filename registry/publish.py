"""Put the blob, then commit the revision row: the one write path of the registry.

Guarantees:
- a committed revision always points at a blob that was stored before the commit;
- a failed commit removes the blob it wrote, unless a committed revision references the same
  content (content addressing: the blob is shared, not ours to delete);
- revision numbers per expert are 1, 2, 3...: the expert row's counter is incremented by an
  UPDATE in the committing transaction, so concurrent uploads serialize on it instead of racing;
- the revision, its task embedding and the search index's change record commit together.
"""

from __future__ import annotations

import io
import logging

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.embeddings import TaskEmbedding
from registry.errors import ConflictError
from registry.ids import ExpertId
from registry.index_log import record_changes
from registry.ingest import CompressedUpload
from registry.models import Expert, Revision, RevisionTag, User
from storage import BlobStore

logger = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 3


def publish_revision(
    session: Session,
    store: BlobStore,
    *,
    expert_id: ExpertId,
    owner: User,
    upload: CompressedUpload,
    embedding: TaskEmbedding,
) -> Revision:
    """Store `upload.blob` and commit its revision under `expert_id`, creating the expert."""
    store.put_stream(
        upload.blob_sha256,
        io.BytesIO(upload.blob),
        sha256=upload.blob_sha256,
        size=len(upload.blob),
    )
    try:
        return _commit_revision(
            session, expert_id=expert_id, owner=owner, upload=upload, embedding=embedding
        )
    except BaseException:
        session.rollback()
        _delete_blob_unless_referenced(session, store, upload.blob_sha256)
        raise


def _commit_revision(
    session: Session,
    *,
    expert_id: ExpertId,
    owner: User,
    upload: CompressedUpload,
    embedding: TaskEmbedding,
) -> Revision:
    """Insert the next revision; retry when a concurrent upload created the same expert first."""
    for _attempt in range(COMMIT_ATTEMPTS):
        try:
            expert = _live_expert_or_new(session, expert_id=expert_id, owner=owner)
            number = session.scalar(
                update(Expert)
                .where(Expert.id == expert.id, Expert.deleted_at.is_(None))
                .values(latest_revision=Expert.latest_revision + 1)
                .returning(Expert.latest_revision)
            )
            if number is None:  # deleted meanwhile: the next attempt creates a new expert
                session.rollback()
                continue
            _check_parent(upload, expert_id, latest=number - 1)
            revision = _revision_row(upload, expert=expert, number=number)
            revision.embedding = embedding.row()
            session.add(revision)
            record_changes(session, [expert.id])
            session.commit()
            return revision
        except IntegrityError:
            session.rollback()
    raise ConflictError(f"{expert_id} is being written by other uploads right now; retry")


def _live_expert_or_new(session: Session, *, expert_id: ExpertId, owner: User) -> Expert:
    expert = session.scalar(
        select(Expert).where(
            Expert.owner_id == owner.id, Expert.name == expert_id.name, Expert.deleted_at.is_(None)
        )
    )
    if expert is None:
        expert = Expert(owner=owner, name=expert_id.name)
        session.add(expert)
        session.flush()
    return expert


def _check_parent(upload: CompressedUpload, expert_id: ExpertId, *, latest: int) -> None:
    """Compare-and-swap: an upload naming its parent revision fails if another one came first."""
    parent = upload.metadata.parent_revision
    if parent is not None and parent != latest:
        raise ConflictError(
            f"parent_revision is {parent} but the latest revision of {expert_id} is {latest}; "
            "fetch it and upload again"
        )


def _revision_row(upload: CompressedUpload, *, expert: Expert, number: int) -> Revision:
    return Revision(
        expert=expert,
        number=number,
        blob_sha256=upload.blob_sha256,
        blob_size=len(upload.blob),
        original_size=upload.original_size,
        original_dtype=upload.original_dtype,
        num_params=upload.num_params,
        density=upload.density,
        scope=upload.scope,
        sigma_min=upload.sigma.min,
        sigma_mean=upload.sigma.mean,
        sigma_max=upload.sigma.max,
        alpha_min=upload.alpha.min,
        alpha_mean=upload.alpha.mean,
        alpha_max=upload.alpha.max,
        base_model=upload.base_model,
        peft_type=upload.peft_type,
        rank=upload.rank,
        lora_alpha=upload.lora_alpha,
        target_modules=upload.target_modules,
        adapter_config=upload.adapter_config,
        task_description=upload.metadata.task_description,
        sample_inputs=upload.metadata.sample_inputs,
        tags=[RevisionTag(tag=tag) for tag in upload.metadata.tags],
    )


def _blob_is_referenced(session: Session, sha256: str) -> bool:
    """True when a committed revision (of any expert, deleted or not) points at the blob."""
    return bool(session.scalar(select(exists().where(Revision.blob_sha256 == sha256))))


def _delete_blob_unless_referenced(session: Session, store: BlobStore, sha256: str) -> None:
    """Undo the put of a failed commit; a failure here is logged (fsck finds the orphan)."""
    try:
        if not _blob_is_referenced(session, sha256):
            store.delete(sha256)
    except Exception:
        logger.exception("could not remove blob %s after a failed commit", sha256)
