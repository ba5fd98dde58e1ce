"""Claim the blob, put it, then commit the revision row: the one write path of the registry.

Guarantees:
- a committed revision always points at a blob that was stored before the commit;
- an upload naming a `parent_revision` that is not the latest, or a name that differs from a live
  expert's only by case, fails before any byte is stored, and again at commit if another upload
  came first meanwhile (compare-and-swap);
- a failed commit removes the blob it wrote only when no committed revision references the same
  content and no other upload is between its put and its commit (`registry.services.blob_claims`);
- revision numbers of a name are 1, 2, 3... and never reused: the expert row's counter is
  incremented by an UPDATE in the committing transaction, so concurrent uploads serialize on it
  instead of racing, and an expert re-created after a delete continues its predecessor's count;
- the revision, its task embedding and the search index's change record commit together.
"""

from __future__ import annotations

import io

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.db.index_log import record_changes
from registry.db.models import Expert, Revision, RevisionDataset, RevisionTag, User
from registry.errors import ConflictError
from registry.ids import ExpertId
from registry.services import blob_claims
from registry.services.ingest import CompressedUpload
from registry.services.vectors import TaskEmbedding
from storage import BlobStore

COMMIT_ATTEMPTS = 3


def refuse_doomed_upload(session: Session, expert_id: ExpertId, parent: int | None) -> None:
    """Refuse (ConflictError), before anything is compressed or stored, an upload that its
    commit would refuse as things stand: a name taken in another case, a stale `parent_revision`.

    Ends its read transaction, so no connection is held while the caller compresses.
    """
    live = session.execute(
        select(Expert.name, Expert.latest_revision)
        .join(Expert.owner)
        .where(User.name == expert_id.owner, _named(expert_id), Expert.deleted_at.is_(None))
    ).first()
    session.rollback()
    if live is not None:
        _refuse_other_case(expert_id, live.name)
    _check_parent(parent, expert_id, latest=0 if live is None else live.latest_revision)


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
    blob_claims.claim(session, upload.blob_sha256)
    try:
        store.put_stream(
            upload.blob_sha256,
            io.BytesIO(upload.blob),
            sha256=upload.blob_sha256,
            size=len(upload.blob),
        )
        return _commit_revision(
            session, expert_id=expert_id, owner=owner, upload=upload, embedding=embedding
        )
    except BaseException:
        blob_claims.abandon(session, store, upload.blob_sha256)
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
            expert, created = _live_expert_or_new(session, expert_id=expert_id, owner=owner)
            number = session.scalar(
                update(Expert)
                .where(Expert.id == expert.id, Expert.deleted_at.is_(None))
                .values(latest_revision=Expert.latest_revision + 1)
                .returning(Expert.latest_revision)
            )
            if number is None:  # deleted meanwhile: the next attempt creates a new expert
                session.rollback()
                continue
            latest = 0 if created else number - 1  # new: no revision yet, whatever its number
            _check_parent(upload.metadata.parent_revision, expert_id, latest=latest)
            revision = _revision_row(upload, expert=expert, number=number)
            revision.embedding = embedding.row()
            session.add(revision)
            blob_claims.release(session, upload.blob_sha256)
            record_changes(session, [expert.id])
            session.commit()
            return revision
        except IntegrityError:  # a concurrent creator won; the next attempt finds its expert
            session.rollback()
    raise ConflictError(f"{expert_id} is being written by other uploads right now; retry")


def _live_expert_or_new(
    session: Session, *, expert_id: ExpertId, owner: User
) -> tuple[Expert, bool]:
    """The live expert `expert_id` and False, or a new one (flushed) and True.

    Names are case-insensitive per owner: ConflictError when a live expert differs only by case.
    A new expert starts after the highest revision any deleted expert of the name (in any case)
    reached, so a revision URL, served as immutable, never names other bytes.
    """
    same_name = (Expert.owner_id == owner.id, _named(expert_id))
    expert = session.scalar(select(Expert).where(*same_name, Expert.deleted_at.is_(None)))
    if expert is None:
        reached = session.scalar(select(func.max(Expert.latest_revision)).where(*same_name))
        reached = reached or 0
        expert = Expert(
            owner=owner, name=expert_id.name, latest_revision=reached, revisions_before=reached
        )
        session.add(expert)
        session.flush()
        return expert, True
    _refuse_other_case(expert_id, expert.name)
    return expert, False


def _named(expert_id: ExpertId) -> ColumnElement[bool]:
    """Experts whose name is `expert_id`'s regardless of case (names are unique that way)."""
    return func.lower(Expert.name) == func.lower(expert_id.name)


def _refuse_other_case(expert_id: ExpertId, existing_name: str) -> None:
    """ConflictError when the live expert found differs from `expert_id` only by case."""
    if existing_name != expert_id.name:
        raise ConflictError(
            f"{expert_id} conflicts with the existing expert {expert_id.owner}/{existing_name}: "
            "names are case-insensitive"
        )


def _check_parent(parent: int | None, expert_id: ExpertId, *, latest: int) -> None:
    """Compare-and-swap: an upload naming its parent revision fails if another one came first."""
    if parent is not None and parent != latest:
        raise ConflictError(
            f"parent_revision is {parent} but the latest revision of {expert_id} is {latest}; "
            "fetch it and upload again"
        )


def _revision_row(upload: CompressedUpload, *, expert: Expert, number: int) -> Revision:
    return Revision(
        expert=expert,
        revision=number,
        blob_sha256=upload.blob_sha256,
        blob_bytes=len(upload.blob),
        original_bytes=upload.original_bytes,
        original_dtype=upload.original_dtype,
        num_params=upload.num_params,
        density=upload.density,
        scope=upload.scope,
        sigma_min=upload.sigma.min,
        sigma_mean=upload.sigma.mean,
        sigma_max=upload.sigma.max,
        alpha_min=upload.default_alpha.min,
        alpha_mean=upload.default_alpha.mean,
        alpha_max=upload.default_alpha.max,
        factorisation=upload.factorisation,
        scale=upload.scale,
        codec=upload.codec,
        value_bits=upload.value_bits,
        error_min=upload.fidelity.relative_error.min,
        error_mean=upload.fidelity.relative_error.mean,
        error_max=upload.fidelity.relative_error.max,
        cosine_min=upload.fidelity.cosine.min,
        cosine_mean=upload.fidelity.cosine.mean,
        cosine_max=upload.fidelity.cosine.max,
        base_model=upload.base_model,
        peft_type=upload.peft_type,
        rank=upload.rank,
        lora_alpha=upload.lora_alpha,
        target_modules=upload.target_modules,
        adapter_config_text=upload.adapter_config_text,
        task_description=upload.metadata.task_description,
        sample_inputs=upload.metadata.sample_inputs,
        message=upload.metadata.message,
        license=upload.license,
        base_model_variant=upload.metadata.base_model_variant,
        model_card=upload.model_card,
        tag_rows=[RevisionTag(tag=tag) for tag in upload.metadata.tags],
        dataset_rows=[RevisionDataset(dataset=dataset) for dataset in upload.datasets],
    )
