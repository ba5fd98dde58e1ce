"""The upload use case: authorize, then validate, compress, embed, store and commit what the HTTP
layer received (`registry.api.upload_parts` streams the parts to files first).

`compress_and_publish` is blocking (parsing safetensors, compressing, embedding the task, blob
store and SQL I/O): the HTTP layer runs it in the thread pool, so one large upload does not stall
the event loop for other requests.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from registry.ids import ExpertId
from registry.services import catalog
from registry.services.accounts import Caller, authorize_write
from registry.services.base_models import base_model_warnings
from registry.services.ingest import ReceivedUpload, compress_upload, parse_metadata
from registry.services.publish import publish_revision, refuse_doomed_upload
from registry.services.unchanged import unchanged_answer
from registry.services.vectors import embed_tasks
from registry.settings import Settings
from registry.wire.experts import RevisionCreated
from retrieval.embedder import TaskEmbedder
from storage import BlobStore


@dataclass(frozen=True)
class UploadServices:
    """What an upload writes to and reads from: the request's session and the app's services."""

    session: Session
    store: BlobStore
    settings: Settings
    embedder: TaskEmbedder


def begin_upload(expert_id: ExpertId, caller: Caller, services: UploadServices) -> None:
    """Refuse an upload the caller may not make, before its body is read; then end the token
    lookup's transaction, so no connection is held while receiving and compressing."""
    authorize_write(caller, expert_id.owner)
    services.session.commit()


def compress_and_publish(
    received: ReceivedUpload, *, expert_id: ExpertId, caller: Caller, services: UploadServices
) -> RevisionCreated:
    """Create the next revision of `expert_id` (creating the expert) from the received parts,
    or answer its latest revision when the upload is identical to it."""
    metadata = parse_metadata(received.metadata_path)
    refuse_doomed_upload(services.session, expert_id, metadata.parent_revision)
    upload = compress_upload(received, metadata, services.settings)
    latest = catalog.latest_revision(services.session, expert_id)
    unchanged = unchanged_answer(latest, upload)
    warnings = [*upload.warnings, *base_model_warnings(upload, latest)]
    services.session.rollback()  # no transaction held while embedding
    if unchanged is not None:
        return unchanged
    [embedding] = embed_tasks(
        services.embedder, [(metadata.task_description, metadata.sample_inputs)]
    )
    revision = publish_revision(
        services.session,
        services.store,
        expert_id=expert_id,
        owner=caller.user,
        upload=upload,
        embedding=embedding,
    )
    return RevisionCreated.model_validate(revision).model_copy(update={"warnings": warnings})
