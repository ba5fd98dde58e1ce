"""Experts and their revisions on the wire: what an upload sends and what reads answer."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from compeft_core.formats import (
    CONFIG_NAME,
    DEFAULT_CODEC,
    FLOAT32_MAX,
    MAX_VALUE_BITS,
    WEIGHTS_NAME,
    CodecName,
)
from registry.wire.common import (
    BaseModelId,
    BaseModelVariant,
    DatasetId,
    FiniteFloat,
    License,
    RevisionMessage,
    SampleInput,
    Summary,
    Tag,
    TaskDescription,
)
from registry.wire.limits import MAX_DATASETS, SQL_INTEGER_MAX

# Built from a registry.db.models.Revision row too (from_attributes): the row's attributes carry
# these names. Only `id` differs: on the row it is the key, so its `owner/name` is read from
# `owner_and_name`; JSON and keyword arguments still say `id`.
_FROM_ROWS = ConfigDict(from_attributes=True)


def _expert_id() -> Any:
    """The `id` field of a revision: `owner/name`."""
    return Field(validation_alias=AliasChoices("owner_and_name", "id"), description="`owner/name`.")


# The multipart upload's parts: the PEFT folder's two files under their own names, and the JSON
# UploadMetadata.
CONFIG_PART = CONFIG_NAME
WEIGHTS_PART = WEIGHTS_NAME
METADATA_PART = "metadata"
# Optional: the adapter folder's model card, kept with the revision and written back by export.
MODEL_CARD_PART = MODEL_CARD_NAME = "README.md"


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
    codec: CodecName | None = Field(
        default=None,
        description="The delta codec (docs/blob-format.md, Codecs): compeft (top-k signs), "
        "bitdelta (every sign, one scale per tensor) or dare (a random subset rescaled by "
        "1/density, with magnitude levels); server default if unset.",
    )
    value_bits: int | None = Field(
        default=None,
        ge=0,
        le=MAX_VALUE_BITS,
        strict=True,
        description="Magnitude bits stored per kept entry (0: the sign only); the codec's "
        "default if unset (dare 4, the others 0).",
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
    base_model: BaseModelId | None = Field(
        default=None,
        description="The base model's hub id, e.g. HuggingFaceTB/SmolLM2-135M-Instruct; unset: "
        "the adapter config's base_model_name_or_path (a local path there is warned about). "
        "Search and exported configs use it.",
    )
    base_model_variant: BaseModelVariant | None = Field(
        default=None,
        description="The base model as the expert was trained on it: full-precision, or its "
        "quantisation (e.g. rtn-4bit-g128, nf4; QLoRA experts are trained on one). Unset: not "
        "stated. Listing and search filter on it.",
    )
    license: License | None = Field(
        default=None,
        description="The expert's license id, e.g. apache-2.0; unset: the model card's "
        "`license:` (YAML front matter), if any. Listing and search filter on it.",
    )
    datasets: list[DatasetId] | None = Field(
        default=None,
        max_length=MAX_DATASETS,
        description="Hub ids of the data sets it was trained on; unset: the model card's "
        "`datasets:`, if any. Listing and search filter on them.",
    )
    message: RevisionMessage | None = Field(
        default=None,
        description="What this revision changes, like a commit message; shown with the revision. "
        "Not part of its content: the same adapter and metadata again with another message "
        "create no revision.",
    )

    @field_validator("tags")
    @classmethod
    def _unique_tags(cls, tags: list[str]) -> list[str]:
        return sorted(set(tags))

    @field_validator("datasets")
    @classmethod
    def _unique_datasets(cls, datasets: list[str] | None) -> list[str] | None:
        return None if datasets is None else sorted(set(datasets))


class FidelitySummary(BaseModel):
    """How close the compressed update is to the uploaded one, over its modules (the product B·A
    of each LoRA module; each other tensor itself): `compeft_core.fidelity`, summarised."""

    relative_error: Summary = Field(description="‖ΔW − ΔŴ‖ / ‖ΔW‖ per module.")
    cosine: Summary = Field(description="cos(ΔW, ΔŴ) per module: 1 is the same direction.")


_RATIO_VS_UPLOAD = Field(
    description="Uploaded file bytes per blob byte: against the file as uploaded (an fp32 file "
    "gives twice the ratio of the same adapter in fp16)."
)
_RATIO_VS_FP16 = Field(
    description="The adapter's parameters at 2 bytes each (fp16) per blob byte: comparable "
    "across uploads whatever their dtype."
)


class RevisionCreated(BaseModel):
    """Answer to a successful upload: 201 with the new revision, or 200 with the latest one when
    the upload is identical to it (`created` false, said in `warnings`)."""

    model_config = _FROM_ROWS

    id: str = _expert_id()
    revision: int
    blob_sha256: str
    original_bytes: int = Field(description="Size of the uploaded adapter_model.safetensors.")
    blob_bytes: int
    compression_ratio: FiniteFloat = _RATIO_VS_UPLOAD
    compression_ratio_fp16: FiniteFloat = _RATIO_VS_FP16
    bits_per_param: FiniteFloat
    num_params: int
    density: FiniteFloat
    scope: str
    factorisation: str = Field(
        default="as-trained", description="How LoRA pairs were factored before compression."
    )
    scale: str = Field(default="entry", description="How the default alphas were chosen.")
    codec: str = Field(default=DEFAULT_CODEC, description="The delta codec of the blob.")
    value_bits: int = Field(default=0, description="Magnitude bits per kept entry (0: signs).")
    fidelity: FidelitySummary | None = Field(
        default=None, description="Measured while compressing."
    )
    created: bool = Field(
        default=True,
        description="False: the upload was identical to the latest revision (same blob, base "
        "model, task description, samples and tags), which is answered instead of a duplicate.",
    )
    warnings: list[str] = Field(
        default_factory=list, description="What the uploader may want to fix, in words."
    )


class RevisionSummary(BaseModel):
    """A revision as listed: enough to pick one."""

    model_config = _FROM_ROWS

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
    message: str | None = Field(default=None, description="The uploader's message, if any.")
    base_model_variant: str | None = Field(
        default=None, description="full-precision, or the base's quantisation; null: not stated."
    )
    license: str | None = Field(default=None, description="License id, e.g. apache-2.0.")
    datasets: list[str] = Field(default_factory=list, description="Training data sets' hub ids.")


class RevisionDetail(RevisionSummary):
    """Everything recorded about a revision."""

    id: str = _expert_id()
    original_bytes: int
    original_dtype: str
    num_params: int
    compression_ratio: FiniteFloat = _RATIO_VS_UPLOAD
    compression_ratio_fp16: FiniteFloat = _RATIO_VS_FP16
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
    codec: str = Field(default=DEFAULT_CODEC, description="The delta codec of the blob.")
    value_bits: int = Field(default=0, description="Magnitude bits per kept entry (0: signs).")
    fidelity: FidelitySummary | None = Field(
        default=None, description="Measured at upload; null for revisions uploaded before it was."
    )
    rank: int | None
    lora_alpha: FiniteFloat | None
    target_modules: list[str]
    adapter_config: dict[str, Any]
    sample_inputs: list[str]
    blob_missing: bool = Field(description="Set by `compeft-hub fsck --repair`: the blob is lost.")
    model_card: str | None = Field(
        default=None, description="The adapter folder's README.md as uploaded (Markdown)."
    )

    def exported_config(self) -> dict[str, Any]:
        """`adapter_config` as clients write it: with the hub's base model (which the upload may
        have named instead of a local path) as base_model_name_or_path, so peft loads the
        adapter on the model it was found for."""
        if self.base_model is None:
            return dict(self.adapter_config)
        return {**self.adapter_config, "base_model_name_or_path": self.base_model}


class ExpertSummary(BaseModel):
    """An expert as listed, with its latest revision."""

    id: str
    owner: str
    name: str
    created_at: datetime
    revision_count: int
    latest: RevisionSummary


class ExpertDetail(ExpertSummary):
    """An expert with all its revisions, oldest first."""

    revisions: list[RevisionSummary]


class ExpertOrder(StrEnum):
    """How a listing is ordered. Each ends on the expert's creation, so pages never overlap."""

    created = "created"  # oldest expert first: the order of uploads, and the default
    recent = "recent"  # the latest revision's creation time, newest first
    name = "name"  # owner, then name, alphabetically (ignoring capitals)


class ExpertPage(BaseModel):
    """One page of a listing; `total` counts every match, not just this page."""

    items: list[ExpertSummary]
    total: int
    limit: int
    offset: int
