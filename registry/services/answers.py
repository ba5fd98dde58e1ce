"""The wire types (`registry.wire`) built from SQL rows and compressor output: the server's half
of the API's types, kept apart so the client never imports SQLAlchemy or numpy."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from compeft_core.fidelity import Fidelity
from registry.db.models import Expert, Revision
from registry.errors import CorruptRecordError
from registry.wire.common import Summary
from registry.wire.experts import (
    ExpertDetail,
    ExpertSummary,
    FidelitySummary,
    RevisionDetail,
    RevisionSummary,
)


def fidelity_summary(modules: Iterable[Fidelity]) -> FidelitySummary:
    """The summary of the per-module figures (at least one module)."""
    figures = list(modules)
    return FidelitySummary(
        relative_error=Summary.of(f.relative_error for f in figures),
        cosine=Summary.of(f.cosine for f in figures),
    )


def row_fidelity(row: Revision) -> FidelitySummary | None:
    """The fidelity columns of a revision row, when it was measured."""
    if row.error_mean is None:
        return None
    return FidelitySummary(
        relative_error=Summary(min=row.error_min, mean=row.error_mean, max=row.error_max),
        cosine=Summary(min=row.cosine_min, mean=row.cosine_mean, max=row.cosine_max),
    )


def revision_summary(row: Revision) -> RevisionSummary:
    return RevisionSummary(**_summary_fields(row))


def revision_detail(row: Revision) -> RevisionDetail:
    """The revision as answered; CorruptRecordError when a stored number is not finite."""
    try:
        return RevisionDetail(
            **_summary_fields(row),
            id=f"{row.expert.owner.name}/{row.expert.name}",
            original_bytes=row.original_size,
            original_dtype=row.original_dtype,
            num_params=row.num_params,
            compression_ratio=row.compression_ratio,
            bits_per_param=row.bits_per_param,
            sigma=Summary(min=row.sigma_min, mean=row.sigma_mean, max=row.sigma_max),
            default_alpha=Summary(min=row.alpha_min, mean=row.alpha_mean, max=row.alpha_max),
            factorisation=row.factorisation,
            scale=row.scale,
            fidelity=row_fidelity(row),
            rank=row.rank,
            lora_alpha=row.lora_alpha,
            target_modules=row.target_modules,
            adapter_config=row.adapter_config_dict,
            sample_inputs=row.sample_inputs,
            blob_missing=row.blob_missing,
        )
    except ValidationError as exc:
        raise CorruptRecordError(
            f"revision {row.number} of {row.expert.owner.name}/{row.expert.name} holds "
            f"values the API cannot answer ({exc.error_count()} non-finite numbers stored "
            "before uploads refused them); its owner should upload the adapter again"
        ) from exc


def _summary_fields(row: Revision) -> dict[str, Any]:
    return {
        "revision": row.number,
        "created_at": row.created_at,
        "base_model": row.base_model,
        "peft_type": row.peft_type,
        "task_description": row.task_description,
        "tags": row.tag_names,
        "blob_sha256": row.blob_sha256,
        "blob_bytes": row.blob_size,
        "density": row.density,
        "scope": row.scope,
    }


def expert_summary(expert: Expert, latest: Revision) -> ExpertSummary:
    return ExpertSummary(**_expert_fields(expert, latest))


def expert_detail(expert: Expert, latest: Revision) -> ExpertDetail:
    """An expert with all its revisions, oldest first."""
    return ExpertDetail(
        **_expert_fields(expert, latest),
        revisions=[revision_summary(row) for row in expert.revisions],
    )


def _expert_fields(expert: Expert, latest: Revision) -> dict[str, Any]:
    return {
        "id": f"{expert.owner.name}/{expert.name}",
        "owner": expert.owner.name,
        "name": expert.name,
        "created_at": expert.created_at,
        "revision_count": expert.latest_revision - expert.revisions_before,
        "latest": revision_summary(latest),
    }
