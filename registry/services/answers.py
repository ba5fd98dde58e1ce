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


def revision_summary(row: Revision) -> RevisionSummary:
    return RevisionSummary.model_validate(row)


def revision_detail(row: Revision) -> RevisionDetail:
    """The revision as answered; CorruptRecordError when a stored number is not finite."""
    try:
        return RevisionDetail.model_validate(row)
    except ValidationError as exc:
        raise CorruptRecordError(
            f"revision {row.revision} of {row.owner_and_name} holds values the API cannot "
            f"answer ({exc.error_count()} non-finite numbers stored before uploads refused "
            "them); its owner should upload the adapter again"
        ) from exc


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
