"""The upload use case: authorize, receive, validate, compress, embed, store, commit, notify.

The request's files live in a temporary folder that is removed however the upload ends. CPU work
(parsing safetensors, compressing, embedding the task) and blocking I/O (blob store, SQL) run in
the thread pool, so one large upload does not stall the event loop for other requests.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from registry.accounts import Caller, authorize_write
from registry.embeddings import embed_tasks
from registry.ids import ExpertId
from registry.ingest import compress_upload, parse_metadata
from registry.publish import publish_revision, refuse_doomed_upload
from registry.settings import Settings
from registry.upload_parts import ReceivedUpload, UploadLimits, receive_upload
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


async def upload_revision(
    request: Request, *, expert_id: ExpertId, caller: Caller, services: UploadServices
) -> RevisionCreated:
    """Create the next revision of `expert_id` from the request body (creating the expert)."""
    authorize_write(caller, expert_id.owner)
    # End the token lookup's transaction: no connection is held while receiving and compressing.
    services.session.commit()
    settings = services.settings
    limits = UploadLimits(
        max_body_bytes=settings.max_upload_bytes,
        max_config_bytes=settings.max_config_bytes,
        max_metadata_bytes=settings.max_metadata_bytes,
    )
    with tempfile.TemporaryDirectory(prefix="compeft-hub-upload-") as folder:
        received = await receive_upload(request, Path(folder), limits)
        return await run_in_threadpool(
            _compress_and_publish, received, expert_id=expert_id, caller=caller, services=services
        )


def _compress_and_publish(
    received: ReceivedUpload, *, expert_id: ExpertId, caller: Caller, services: UploadServices
) -> RevisionCreated:
    metadata = parse_metadata(received.metadata_path)
    refuse_doomed_upload(services.session, expert_id, metadata.parent_revision)
    upload = compress_upload(received, metadata, services.settings)
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
    return RevisionCreated(
        id=str(expert_id),
        revision=revision.number,
        blob_sha256=revision.blob_sha256,
        original_bytes=revision.original_size,
        blob_bytes=revision.blob_size,
        compression_ratio=revision.compression_ratio,
        bits_per_param=revision.bits_per_param,
        num_params=revision.num_params,
        density=revision.density,
        scope=revision.scope,
        factorisation=revision.factorisation,
        scale=revision.scale,
        fidelity=upload.fidelity,
    )

