"""A search on the wire: the task in words and/or a few inputs, and the experts found."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from registry.wire.common import BaseModelVariant, DatasetId, FiniteFloat, License, Tag
from registry.wire.experts import RevisionDetail
from registry.wire.limits import BASE_MODEL_LENGTH, MAX_EXCLUDED
from retrieval.limits import MAX_K, MAX_QUERY_CHARS, MAX_QUERY_EXAMPLES

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
    license: License | None = Field(default=None, description="Only experts under this license.")
    dataset: DatasetId | None = Field(
        default=None, description="Only experts trained on this data set (any case)."
    )
    base_model_variant: BaseModelVariant | None = Field(
        default=None,
        description="Only experts trained on this variant of the base model (full-precision, "
        "nf4, ...).",
    )
    k: int = Field(default=10, ge=1, le=MAX_K, description="How many experts at most.")
    exclude: list[str] = Field(
        default_factory=list, max_length=MAX_EXCLUDED, description="`owner/name`s to leave out."
    )

    @model_validator(mode="after")
    def _has_something_to_search(self) -> SearchRequest:
        if self.query is None and not self.examples:
            raise ValueError("give a query, at least one example, or both")
        return self


class BaseModelList(BaseModel):
    """The base models a search can name: those of the live experts' latest revisions."""

    base_models: list[str] = Field(description="Sorted.")


class EmbedderInfo(BaseModel):
    """The model that embedded the query and the experts (scores compare only within one)."""

    name: str
    version: str
    dim: int


class ScoreWeights(BaseModel):
    """The weight of each part in the fused score; they sum to 1."""

    dense: float = Field(description="0.25 for a query with examples, 0.5 for words only.")
    description: float = Field(description="0 for a query with examples, 0.5 for words only.")
    lexical: float = Field(description="0.75 for a query with examples, 0 for words only.")


class ScoringInfo(BaseModel):
    """How the scores were made: `score = sum over parts of weights[part] x score_parts[part]`."""

    weights: ScoreWeights
    lexical: str = Field(description="The lexical recipe (hashed character n-grams) and version.")
    rerank_depth: int = Field(description="How many dense hits the fused score ranked again.")


class ScoreParts(BaseModel):
    """What one expert's score is made of, so a user can see why it ranked where it did.

    A part is null when the expert has no vector for it yet (stored before such vectors existed:
    `compeft-hub reembed` adds them); it is counted as 0.
    """

    dense: FiniteFloat = Field(
        description="Cosine of the query's embedding and the task's (description and inputs)."
    )
    description: FiniteFloat | None = Field(
        description="Cosine of the query's embedding and the task description's alone."
    )
    lexical: FiniteFloat | None = Field(description="Cosine of their character n-grams.")


class SearchResult(BaseModel):
    """One expert found, with its latest revision as `GET .../revisions/latest` shows it."""

    id: str
    score: FiniteFloat = Field(description="The fused score that ranks: see `scoring`.")
    score_parts: ScoreParts
    rank: int = Field(description="1 for the best match.")
    revision: RevisionDetail


class SearchResponse(BaseModel):
    """The best experts first."""

    results: list[SearchResult]
    embedder: EmbedderInfo
    scoring: ScoringInfo
