"""An upload identical to the expert's latest revision is answered with that revision.

Like a commit with no changes, which `huggingface_hub` skips: uploading the same folder twice
(a retried script, a re-run notebook) would otherwise leave revisions that differ in nothing but
their number. "Identical" means the same content: the blob (weights, adapter config and the
compression choices, which its sha256 covers), the base model, the searchable metadata and the
model card with its license and data sets. The message is not content: a new message alone creates no revision.
"""

from __future__ import annotations

from typing import Any

from registry.db.models import Revision
from registry.services.ingest import CompressedUpload
from registry.wire.experts import RevisionCreated


def unchanged_answer(latest: Revision | None, upload: CompressedUpload) -> RevisionCreated | None:
    """`latest` as the answer (`created` false) when `upload` has its content; None when the
    upload makes a new revision. A latest revision whose blob fsck flagged as lost is not an
    answer: uploading the adapter again is how its owner heals it (the new revision stores the
    blob, and the next `fsck --repair` unflags the old one)."""
    if latest is None or latest.blob_missing or _content(latest) != _uploaded_content(upload):
        return None
    said = (
        f"identical to revision {latest.revision} (same adapter, compression and metadata): "
        "no new revision was made"
    )
    return RevisionCreated.model_validate(latest).model_copy(
        update={"created": False, "warnings": [said]}
    )


def _content(row: Revision) -> tuple[Any, ...]:
    return (
        row.blob_sha256,
        row.base_model,
        row.task_description,
        row.sample_inputs,
        row.tags,
        row.license,
        row.base_model_variant,
        row.datasets,
        row.model_card,
    )


def _uploaded_content(upload: CompressedUpload) -> tuple[Any, ...]:
    metadata = upload.metadata
    return (
        upload.blob_sha256,
        upload.base_model,
        metadata.task_description,
        metadata.sample_inputs,
        metadata.tags,
        upload.license,
        metadata.base_model_variant,
        upload.datasets,
        upload.model_card,
    )
