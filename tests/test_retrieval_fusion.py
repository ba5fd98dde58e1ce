"""The index's second stage: the dense top hits ranked by the weighted sum of their three parts."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.errors import RetrievalError
from retrieval.fusion import (
    RERANK_DEPTH,
    WITH_INPUTS,
    WORDS_ONLY,
    FusionWeights,
    SecondStage,
    weights_for,
)
from retrieval.index import ExpertIndex, ExpertRecord
from retrieval.lexical import LexicalEncoder, LexicalVector, lexical_scores

DIM = 16
BASE = "base-a"
ENCODER = LexicalEncoder()
WEIGHTS = FusionWeights(dense=0.2, description=0.3, lexical=0.5)
CARD_TEXTS = [
    f"expert {i} handles " + " ".join(f"w{(i * 7 + j) % 97}" for j in range(12)) for i in range(120)
]


def unit_rows(count: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def encode(text: str) -> LexicalVector:
    [vector] = ENCODER.encode([[text]])
    return vector


class Catalog:
    """`count` experts with random task and description vectors and the n-grams of CARD_TEXTS."""

    def __init__(self, count: int) -> None:
        self.vectors = unit_rows(count, seed=1)
        self.descriptions = unit_rows(count, seed=3)
        self.lexical = ENCODER.encode([[text] for text in CARD_TEXTS[:count]])
        self.index = ExpertIndex(DIM)
        self.index.update(upserts=[self.record(i) for i in range(count)])

    def record(self, expert_id: int, base_model: str = BASE) -> ExpertRecord:
        return ExpertRecord(
            expert_id,
            self.vectors[expert_id],
            base_model,
            "LORA",
            lexical=self.lexical[expert_id],
            description=self.descriptions[expert_id],
        )


def test_the_second_stage_ranks_the_dense_top_hits_by_the_weighted_sum_of_parts() -> None:
    catalog = Catalog(120)
    query_dense = unit_rows(1, seed=2)[0]
    stage = SecondStage(encode(CARD_TEXTS[3]), WEIGHTS)
    hits = catalog.index.search(query_dense, BASE, k=10, second_stage=stage)
    dense = catalog.vectors @ query_dense
    description = catalog.descriptions @ query_dense
    lexical = lexical_scores(stage.lexical, catalog.lexical)
    fused = 0.2 * dense + 0.3 * description + 0.5 * lexical
    pool = np.argsort(-dense, kind="stable")[:RERANK_DEPTH]
    expected = [int(pool[i]) for i in np.argsort(-fused[pool], kind="stable")[:10]]
    assert [hit.expert_id for hit in hits] == expected
    for hit in hits:
        assert hit.dense == pytest.approx(float(dense[hit.expert_id]), abs=1e-5)
        assert hit.description == pytest.approx(float(description[hit.expert_id]), abs=1e-5)
        assert hit.lexical == pytest.approx(float(lexical[hit.expert_id]), abs=1e-6)
        assert hit.score == pytest.approx(float(fused[hit.expert_id]), abs=1e-5)


def test_the_description_part_alone_can_reorder_the_dense_hits() -> None:
    catalog = Catalog(60)
    query = catalog.descriptions[7]  # the words of expert 7's description, as it were
    stage = SecondStage(encode("no shared n-grams here"), FusionWeights(0.0, 1.0, 0.0))
    hits = catalog.index.search(query, BASE, k=60, second_stage=stage)
    assert hits[0].expert_id == 7 and hits[0].description == pytest.approx(1.0, abs=1e-6)
    dense_first = catalog.index.search(query, BASE, k=1)[0].expert_id
    assert dense_first != 7  # the dense stage alone ranks another expert first


def test_an_expert_outside_the_rerank_depth_is_not_lifted_in() -> None:
    """Only the dense stage's best max(k, RERANK_DEPTH) are re-scored, as the hub documents."""
    catalog = Catalog(120)
    far = int(np.argsort(-(catalog.vectors @ catalog.vectors[0]), kind="stable")[80])  # rank 81
    stage = SecondStage(encode(CARD_TEXTS[far]), FusionWeights(0.25, 0.0, 0.75))
    shallow = catalog.index.search(catalog.vectors[0], BASE, k=10, second_stage=stage)
    assert far not in [hit.expert_id for hit in shallow]
    deep = catalog.index.search(catalog.vectors[0], BASE, k=100, second_stage=stage)
    assert far in [hit.expert_id for hit in deep[:10]]


def test_part_vectors_follow_upserts_removes_and_rebuilds() -> None:
    catalog = Catalog(60)
    index, vectors = catalog.index, catalog.vectors
    stage = SecondStage(encode(CARD_TEXTS[5]), WEIGHTS)

    def parts_of(expert_id: int) -> tuple[float | None, float | None]:
        hits = index.search(vectors[5], BASE, k=60, second_stage=stage)
        hit = next(hit for hit in hits if hit.expert_id == expert_id)
        return hit.lexical, hit.description

    own_description = float(catalog.descriptions[5] @ vectors[5])
    assert parts_of(5) == (pytest.approx(1.0, abs=1e-6), pytest.approx(own_description, abs=1e-6))
    index.add(5, vectors[5], BASE, "LORA")  # a new row without part vectors
    assert parts_of(5) == (None, None)
    index.rebuild([catalog.record(i) for i in range(60)])
    assert parts_of(5) == (pytest.approx(1.0, abs=1e-6), pytest.approx(own_description, abs=1e-6))
    index.remove(5)
    index.add(5, vectors[5], "base-b", "LORA")
    [moved] = index.search(vectors[5], "base-b", k=1, second_stage=stage)
    assert (moved.lexical, moved.description) == (None, None)
    assert moved.score == pytest.approx(WEIGHTS.dense * moved.dense, abs=1e-6)


def test_a_dense_only_search_reports_its_score_as_the_dense_part() -> None:
    catalog = Catalog(30)
    for hit in catalog.index.search(catalog.vectors[0], BASE, k=5):
        assert hit.dense == hit.score and hit.lexical is None and hit.description is None


@pytest.mark.parametrize(
    ("description", "message"),
    [
        (np.ones(DIM + 1, dtype=np.float32), r"shape \(17,\)"),
        (np.full(DIM, np.nan, dtype=np.float32), "finite and non-zero"),
        (np.zeros(DIM, dtype=np.float32), "finite and non-zero"),
    ],
    ids=["wrong-shape", "nan", "zero"],
)
def test_an_invalid_description_vector_is_refused_before_anything_changes(
    description: np.ndarray, message: str
) -> None:
    catalog = Catalog(10)
    bad = ExpertRecord(3, catalog.vectors[0], BASE, "LORA", description=description)
    with pytest.raises(RetrievalError, match=message):
        catalog.index.update(upserts=[catalog.record(9, base_model="base-b"), bad], deletes=[4])
    assert 4 in catalog.index and "base-b" not in catalog.index.base_models()
    stage = SecondStage(encode(CARD_TEXTS[3]), WEIGHTS)
    hits = catalog.index.search(catalog.vectors[3], BASE, k=10, second_stage=stage)
    hit = next(hit for hit in hits if hit.expert_id == 3)
    assert hit.description == pytest.approx(float(catalog.descriptions[3] @ catalog.vectors[3]))


def test_queries_with_inputs_and_in_words_get_their_tuned_weights() -> None:
    assert weights_for(["an input"]) == WITH_INPUTS
    assert weights_for([]) == WORDS_ONLY
    for weights in (WITH_INPUTS, WORDS_ONLY):
        assert weights.dense + weights.description + weights.lexical == pytest.approx(1.0)
    assert WORDS_ONLY.description > 0 and WITH_INPUTS.lexical > WITH_INPUTS.dense
