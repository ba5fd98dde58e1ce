"""A search's second stage: the dense stage's best hits ranked again by a weighted sum of parts.

Three parts score an expert against a query, each a cosine:
- `dense`: the query's embedding against the card's (description and inputs pooled), the first
  stage's score and the only one FAISS searches by;
- `description`: the query's embedding against the embedding of the card's description alone. A
  query in words reads like a description, not like a task's inputs, and in the pooled card the
  description is one text among up to 21; with this part, word queries go from 0.40 to 0.83
  top-1 on the tuning part of the real-task set (`bench/retrieval_methods.py`, docs/retrieval.md);
- `lexical`: the query's hashed character n-grams against the card's (`retrieval.lexical`), which
  tell apart what the dense model blurs (a script, a party's names, an outlet's house words).

The weights are chosen per kind of query on the tuning part of the real-task set: a query with
inputs leans on their n-grams and gains nothing from the description; a query in words (few
n-grams, much paraphrase) splits between the pooled card and the description.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from retrieval.lexical import LexicalVector, lexical_scores
from retrieval.shard import Hit

# The second stage re-scores the dense stage's best RERANK_DEPTH hits (or k, when larger): on the
# real-task set the right expert is in the dense top 50 for every query, and the parts beyond the
# dense one are scored per candidate from vectors the index keeps beside its FAISS shards.
RERANK_DEPTH = 50


def rerank_depth(k: int) -> int:
    """How many dense hits a search for k experts re-scores."""
    return max(k, RERANK_DEPTH)


@dataclass(frozen=True)
class FusionWeights:
    """`score = dense x dense part + description x description part + lexical x lexical part`."""

    dense: float
    description: float
    lexical: float


WITH_INPUTS = FusionWeights(dense=0.25, description=0.0, lexical=0.75)
WORDS_ONLY = FusionWeights(dense=0.5, description=0.5, lexical=0.0)


def weights_for(examples: Sequence[str]) -> FusionWeights:
    """The tuned weights of a query: with inputs, or in words only."""
    return WITH_INPUTS if examples else WORDS_ONLY


@dataclass(frozen=True)
class SecondStage:
    """What one search's second stage needs beyond its dense vector: the query's n-grams and the
    weights of its kind."""

    lexical: LexicalVector
    weights: FusionWeights


def reranked(
    hits: Sequence[Hit],
    query: np.ndarray,
    descriptions: Sequence[np.ndarray | None],
    lexical: Sequence[LexicalVector | None],
    stage: SecondStage,
) -> list[Hit]:
    """The hits with their parts, ranked by the fused score; ties keep the dense order.

    `query` is the unit query vector the dense stage searched with; `descriptions` and `lexical`
    hold each hit's stored vectors, None where it has none (it scores 0 on that part and its Hit
    says None, so a user sees the part is missing rather than poor).
    """
    lexical_parts = lexical_scores(stage.lexical, lexical)
    weights = stage.weights
    fused = []
    for hit, description, terms, lexical_part in zip(
        hits, descriptions, lexical, lexical_parts, strict=True
    ):
        description_part = None if description is None else float(description @ query)
        lexical_part = None if terms is None else float(lexical_part)
        score = (
            weights.dense * hit.dense
            + weights.description * (description_part or 0.0)
            + weights.lexical * (lexical_part or 0.0)
        )
        fused.append(Hit(hit.expert_id, score, hit.dense, lexical_part, description_part))
    return sorted(fused, key=lambda hit: -hit.score)
