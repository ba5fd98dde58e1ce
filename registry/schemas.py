"""Pydantic models of what the API accepts (upload metadata, searches) and answers (JSON bodies)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from statistics import fmean
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from compeft_core.compress import FLOAT32_MAX
from compeft_core.fidelity import Fidelity
from registry.errors import CorruptRecordError
from registry.models import BASE_MODEL_LENGTH, TAG_LENGTH, Expert, Revision
from retrieval import MAX_K, MAX_QUERY_EXAMPLES

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


SQL_INTEGER_MAX = 2**31 - 1  # SQL INTEGER columns are 32-bit on PostgreSQL
# Every float the API answers: JSON has no infinity or NaN (pydantic would write `null`, which
# breaks the schema and every client), so a row holding one is refused when converted.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _without_control_characters(text: str) -> str:
    """Text may hold tabs and newlines, never NUL or other controls (PostgreSQL refuses NUL)."""
    if _CONTROL_CHARACTERS.search(text):
        raise ValueError("control characters are not allowed")
    return text


Tag = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=rf"^[\w\-.:]{{1,{TAG_LENGTH}}}$")
]
SampleInput = Annotated[
    str,
    StringConstraints(min_length=1, max_length=4000),
    AfterValidator(_without_control_characters),
]
TaskDescription = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=8000),
    AfterValidator(_without_control_characters),
]


class UploadMetadata(BaseModel):
    """The JSON `metadata` part of an upload. Unknown keys are refused, to catch typos."""

    model_config = ConfigDict(extra="forbid")

    task_description: TaskDescription = Field(
        description="What the expert does, in words; used for search."
    )
    sample_inputs: list[SampleInput] = Field(default_factory=list, max_length=64)
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    density: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Fraction of entries kept; server default if unset.",
    )
    scope: Literal["tensor", "global"] | None = Field(
        default=None, description="Top-k and sigma per tensor or over all tensors."
    )
    factorisation: Literal["as-trained", "balanced"] | None = Field(
        default=None,
        description="LoRA pairs compressed as uploaded, or re-factored as B = U√S, A = √S Vᵀ "
        "first (same product); server default if unset.",
    )
    scale: Literal["entry", "unbiased"] | None = Field(
        default=None,
        description="Default alphas: the paper's per-tensor L2-optimal one, or per LoRA module "
        "the product scale unbiased along the update; server default if unset. Ignored when "
        "alpha is given.",
    )
    alpha: float | None = Field(
        default=None,
        gt=0.0,
        le=FLOAT32_MAX,
        allow_inf_nan=False,
        description="Default alpha stored in the blob (a positive float32); unset: the L2-optimal "
        "one.",
    )
    parent_revision: int | None = Field(
        default=None,
        ge=0,
        le=SQL_INTEGER_MAX,
        description="Refuse (409) unless this is the expert's latest revision (0: a new expert).",
    )

    @field_validator("tags")
    @classmethod
    def _unique_tags(cls, tags: list[str]) -> list[str]:
        return sorted(set(tags))


class Summary(BaseModel):
    """min / mean / max of a per-tensor quantity."""

    min: FiniteFloat
    mean: FiniteFloat
    max: FiniteFloat

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        """The summary of a non-empty collection of values."""
        ordered = sorted(values)
        return cls(min=ordered[0], mean=fmean(ordered), max=ordered[-1])


class FidelitySummary(BaseModel):
    """How close the compressed update is to the uploaded one, over its modules (the product B·A
    of each LoRA module; each other tensor itself): `compeft_core.fidelity`, summarised."""

    relative_error: Summary = Field(description="‖ΔW − ΔŴ‖ / ‖ΔW‖ per module.")
    cosine: Summary = Field(description="cos(ΔW, ΔŴ) per module: 1 is the same direction.")

    @classmethod
    def of(cls, modules: Iterable[Fidelity]) -> FidelitySummary:
        """The summary of the per-module figures (at least one module)."""
        figures = list(modules)
        return cls(relative_error=Summary.of(f.relative_error for f in figures),
                   cosine=Summary.of(f.cosine for f in figures))


class RevisionCreated(BaseModel):
    """Answer to a successful upload (201)."""

    id: str
    revision: int
    blob_sha256: str
    original_bytes: int = Field(description="Size of the uploaded adapter_model.safetensors.")
    blob_bytes: int
    compression_ratio: FiniteFloat
    bits_per_param: FiniteFloat
    num_params: int
    density: FiniteFloat
    scope: str
    factorisation: str = Field(
        default="as-trained", description="How LoRA pairs were factored before compression."
    )
    scale: str = Field(default="entry", description="How the default alphas were chosen.")
    fidelity: FidelitySummary | None = Field(default=None, description="Measured while compressing.")


class RevisionSummary(BaseModel):
    """A revision as listed: enough to pick one."""

    revision: int
    created_at: datetime
    base_model: str | None
    peft_type: str
    task_description: str
    tags: list[str]
    blob_sha256: str
    blob_bytes: int
    density: FiniteFloat
    scope: str

    @classmethod
    def from_row(cls, row: Revision) -> RevisionSummary:
        return cls(**_summary_fields(row))


class RevisionDetail(RevisionSummary):
    """Everything recorded about a revision."""

    id: str
    original_bytes: int
    original_dtype: str
    num_params: int
    compression_ratio: FiniteFloat
    bits_per_param: FiniteFloat
    sigma: Summary
    default_alpha: Summary
    # Defaults: what a hub from before these fields were recorded compressed with.
    factorisation: str = Field(
        default="as-trained", description="How LoRA pairs were factored before compression."
    )
    scale: str = Field(
        default="entry", description="How the default alphas were chosen (fixed: given at upload)."
    )
    fidelity: FidelitySummary | None = Field(
        default=None, description="Measured at upload; null for revisions uploaded before it was."
    )
    rank: int | None
    lora_alpha: FiniteFloat | None
    target_modules: list[str]
    adapter_config: dict[str, Any]
    sample_inputs: list[str]
    blob_missing: bool = Field(description="Set by `compeft-hub fsck --repair`: the blob is lost.")

    @classmethod
    def from_row(cls, row: Revision) -> RevisionDetail:
        """The revision as answered; CorruptRecordError when a stored number is not finite."""
        try:
            return cls._from_row(row)
        except ValidationError as exc:
            raise CorruptRecordError(
                f"revision {row.number} of {row.expert.owner.name}/{row.expert.name} holds "
                f"values the API cannot answer ({exc.error_count()} non-finite numbers stored "
                "before uploads refused them); its owner should upload the adapter again"
            ) from exc

    @classmethod
    def _from_row(cls, row: Revision) -> RevisionDetail:
        return cls(
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


def row_fidelity(row: Revision) -> FidelitySummary | None:
    """The fidelity columns of a revision row, when it was measured."""
    if row.error_mean is None:
        return None
    return FidelitySummary(
        relative_error=Summary(min=row.error_min, mean=row.error_mean, max=row.error_max),
        cosine=Summary(min=row.cosine_min, mean=row.cosine_mean, max=row.cosine_max),
    )


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


class ExpertSummary(BaseModel):
    """An expert as listed, with its latest revision."""

    id: str
    owner: str
    name: str
    created_at: datetime
    revision_count: int
    latest: RevisionSummary

    @classmethod
    def from_rows(cls, expert: Expert, latest: Revision) -> ExpertSummary:
        return cls(**_expert_fields(expert, latest))


class ExpertDetail(ExpertSummary):
    """An expert with all its revisions, oldest first."""

    revisions: list[RevisionSummary]

    @classmethod
    def from_rows(cls, expert: Expert, latest: Revision) -> ExpertDetail:
        return cls(
            **_expert_fields(expert, latest),
            revisions=[RevisionSummary.from_row(row) for row in expert.revisions],
        )


def _expert_fields(expert: Expert, latest: Revision) -> dict[str, Any]:
    return {
        "id": f"{expert.owner.name}/{expert.name}",
        "owner": expert.owner.name,
        "name": expert.name,
        "created_at": expert.created_at,
        "revision_count": expert.latest_revision - expert.revisions_before,
        "latest": RevisionSummary.from_row(latest),
    }


class ExpertPage(BaseModel):
    """One page of a listing; `total` counts every match, not just this page."""

    items: list[ExpertSummary]
    total: int
    limit: int
    offset: int


# The embedding model reads about 1,000 characters (256 word pieces); longer text is cut unseen.
MAX_QUERY_CHARS = 2000
MAX_EXCLUDED = 1000
QueryText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_QUERY_CHARS)
]


class SearchRequest(BaseModel):
    """A task in words and/or a few of its inputs; the experts of one base model that fit it."""

    model_config = ConfigDict(extra="forbid")

    query: QueryText | None = Field(default=None, description="The task in words.")
    examples: list[QueryText] = Field(
        default_factory=list, max_length=MAX_QUERY_EXAMPLES, description="Inputs of the task."
    )
    base_model: str = Field(
        min_length=1, max_length=BASE_MODEL_LENGTH, description="As the adapters' configs name it."
    )
    peft_type: Annotated[str, StringConstraints(to_upper=True, max_length=32)] | None = Field(
        default=None, examples=["LORA", "IA3"]
    )
    tags: list[Tag] = Field(default_factory=list, max_length=32, description="All must match.")
    k: int = Field(default=10, ge=1, le=MAX_K, description="How many experts at most.")
    exclude: list[str] = Field(
        default_factory=list, max_length=MAX_EXCLUDED, description="`owner/name`s to leave out."
    )

    @model_validator(mode="after")
    def _has_something_to_search(self) -> SearchRequest:
        if self.query is None and not self.examples:
            raise ValueError("give a query, at least one example, or both")
        return self


class EmbedderInfo(BaseModel):
    """The model that embedded the query and the experts (scores compare only within one)."""

    name: str
    version: str
    dim: int


class SearchResult(BaseModel):
    """One expert found, with its latest revision as `GET .../revisions/latest` shows it."""

    id: str
    score: FiniteFloat = Field(description="Cosine similarity of the query and the expert's task.")
    rank: int = Field(description="1 for the best match.")
    revision: RevisionDetail


class SearchResponse(BaseModel):
    """The best experts first."""

    results: list[SearchResult]
    embedder: EmbedderInfo


class ErrorBody(BaseModel):
    """Every error answer: a message a person can act on."""

    detail: str
