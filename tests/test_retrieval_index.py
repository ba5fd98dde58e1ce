"""ExpertIndex on random vectors: exactness, filters, upserts and the ANN path."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from retrieval.errors import RetrievalError, UnknownBaseModelError
from retrieval.index import ExpertIndex, ExpertRecord
from retrieval.limits import MAX_K
from retrieval.shard import IndexConfig

DIM = 32
BASE = "base-a"


def unit_rows(count: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute_force(vectors: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scores = vectors @ query
    return [int(ids[i]) for i in np.argsort(-scores, kind="stable")[:k]]


def filled_index(count: int, config: IndexConfig | None = None, seed: int = 0):
    """An index of `count` experts: ids 0..count-1, PEFT type by parity, tag 'even'/'third'."""
    vectors = unit_rows(count, seed)
    index = ExpertIndex(DIM, config)
    index.update(
        upserts=[
            ExpertRecord(
                i,
                vectors[i],
                BASE,
                "LORA" if i % 2 == 0 else "IA3",
                {tag for tag, keep in (("even", i % 2 == 0), ("third", i % 3 == 0)) if keep},
            )
            for i in range(count)
        ]
    )
    return index, vectors


def test_exact_search_equals_brute_force_numpy():
    index, vectors = filled_index(500)
    ids = np.arange(500)
    for query in unit_rows(20, seed=1):
        hits = index.search(query, BASE, k=10)
        assert [hit.expert_id for hit in hits] == brute_force(vectors, ids, query, 10)
        np.testing.assert_allclose(
            [hit.score for hit in hits], np.sort(vectors @ query)[::-1][:10], atol=1e-5
        )


def test_scores_are_cosine_similarities_whatever_the_input_norm():
    index = ExpertIndex(2)
    index.add(1, [3.0, 0.0], BASE, "LORA")
    index.add(2, [1.0, 1.0], BASE, "LORA")
    hits = index.search([0.0, 5.0], BASE, k=2)
    assert [hit.expert_id for hit in hits] == [2, 1]
    assert hits[0].score == pytest.approx(np.sqrt(0.5))
    assert hits[1].score == pytest.approx(0.0, abs=1e-6)


def test_search_only_returns_experts_of_the_queried_base_model():
    index, vectors = filled_index(100)
    index.add(1000, vectors[0], "base-b", "LORA")
    assert [hit.expert_id for hit in index.search(vectors[0], "base-b", k=5)] == [1000]
    assert 1000 not in [hit.expert_id for hit in index.search(vectors[0], BASE, k=100)]
    assert index.base_models() == {BASE, "base-b"}


def test_unknown_base_model_raises_unknown_base_model_error():
    index, vectors = filled_index(10)
    with pytest.raises(UnknownBaseModelError, match="no experts are indexed for base model 'nope'"):
        index.search(vectors[0], "nope", k=3)


def test_peft_type_and_tag_filters_are_honoured_exactly():
    index, vectors = filled_index(600)
    ids = np.arange(600)
    matching = (ids % 2 == 0) & (ids % 3 == 0)  # LORA and tagged 'third'
    for query in unit_rows(10, seed=2):
        hits = index.search(query, BASE, k=10, peft_type="LORA", tags={"third"})
        assert [hit.expert_id for hit in hits] == brute_force(
            vectors[matching], ids[matching], query, 10
        )
    assert index.search(vectors[0], BASE, k=5, tags={"even", "missing-tag"}) == []
    assert (
        index.search(vectors[1], BASE, k=5, peft_type="LORA", tags={"third"})[0].expert_id % 6 == 0
    )


def test_excluded_ids_are_never_returned():
    index, vectors = filled_index(200)
    top = [hit.expert_id for hit in index.search(vectors[7], BASE, k=5)]
    hits = index.search(vectors[7], BASE, k=5, exclude=top[:3])
    assert [hit.expert_id for hit in hits][:2] == top[3:]
    assert not set(top[:3]) & {hit.expert_id for hit in hits}
    filtered = index.search(vectors[7], BASE, k=5, peft_type="IA3", exclude=[7])
    assert 7 not in {hit.expert_id for hit in filtered}


def test_fewer_hits_than_k_when_fewer_experts_match():
    index, vectors = filled_index(6)
    assert len(index.search(vectors[0], BASE, k=100)) == 6
    assert {hit.expert_id for hit in index.search(vectors[0], BASE, k=10, tags={"third"})} == {0, 3}


def test_add_with_an_existing_id_replaces_vector_and_attributes():
    index, vectors = filled_index(50)
    index.add(3, vectors[40], BASE, "LORA", tags=["new"])
    assert len(index) == 50
    hits = index.search(vectors[40], BASE, k=2)
    assert {hit.expert_id for hit in hits} == {3, 40}
    assert [hit.expert_id for hit in index.search(vectors[40], BASE, k=5, tags=["new"])] == [3]
    assert 3 not in {hit.expert_id for hit in index.search(vectors[3], BASE, k=5, peft_type="IA3")}


def test_an_expert_can_move_to_another_base_model():
    index, vectors = filled_index(20)
    index.add(5, vectors[5], "base-b", "LORA")
    assert 5 not in {hit.expert_id for hit in index.search(vectors[5], BASE, k=20)}
    assert [hit.expert_id for hit in index.search(vectors[5], "base-b", k=1)] == [5]


def test_remove_drops_the_expert_and_an_emptied_base_model_becomes_unknown():
    index, vectors = filled_index(30)
    index.add(99, vectors[0], "base-b", "LORA")
    assert index.remove(4) is True
    assert index.remove(4) is False
    assert 4 not in index and len(index) == 30
    assert 4 not in {hit.expert_id for hit in index.search(vectors[4], BASE, k=30)}
    index.remove(99)
    assert index.base_models() == {BASE}
    with pytest.raises(UnknownBaseModelError):
        index.search(vectors[0], "base-b", k=1)


def test_results_stay_exact_through_many_removals_and_compactions():
    index, vectors = filled_index(400)
    removed = np.random.default_rng(3).choice(400, size=300, replace=False)
    for expert_id in removed:
        index.remove(int(expert_id))
    kept = np.setdiff1d(np.arange(400), removed)
    for query in unit_rows(10, seed=4):
        hits = index.search(query, BASE, k=10)
        assert [hit.expert_id for hit in hits] == brute_force(vectors[kept], kept, query, 10)


@pytest.mark.parametrize("k", [0, -1, MAX_K + 1, 2.5, True, "3"])
def test_k_outside_1_to_100_raises(k):
    index, vectors = filled_index(5)
    with pytest.raises(RetrievalError, match="k must be an integer from 1 to 100"):
        index.search(vectors[0], BASE, k=k)


def test_wrong_dimension_and_degenerate_vectors_raise_before_anything_changes():
    index, vectors = filled_index(5)
    with pytest.raises(RetrievalError, match=r"shape \(16,\), expected \(32,\)"):
        index.search(np.ones(16), BASE, k=1)
    with pytest.raises(RetrievalError, match="shape"):
        index.update(
            upserts=[
                ExpertRecord(10, vectors[0], BASE, "LORA"),
                ExpertRecord(11, [1.0], BASE, "LORA"),
            ]
        )
    with pytest.raises(RetrievalError, match="finite and non-zero"):
        index.add(12, np.zeros(DIM), BASE, "LORA")
    with pytest.raises(RetrievalError, match="finite and non-zero"):
        index.search(np.full(DIM, np.nan), BASE, k=1)
    assert len(index) == 5 and 10 not in index


def test_tags_given_as_one_string_are_refused():
    index, vectors = filled_index(5)
    with pytest.raises(RetrievalError, match="not one string"):
        index.search(vectors[0], BASE, k=1, tags="even")


def test_ann_index_takes_over_above_the_threshold_and_agrees_with_exact_search():
    config = IndexConfig(ann_threshold=1500)
    ann, vectors = filled_index(1499, config)
    assert ann.kind(BASE) == "exact"
    extra = unit_rows(1501, seed=5)
    for offset, vector in enumerate(extra[:3]):  # one at a time, as uploads arrive
        ann.add(1499 + offset, vector, BASE, "LORA")
    assert ann.kind(BASE) == "hnsw"
    ann.update(upserts=[ExpertRecord(1502 + i, v, BASE, "IA3") for i, v in enumerate(extra[3:])])
    exact = ExpertIndex(DIM, IndexConfig(ann_threshold=10**9))
    exact.update(
        upserts=[ExpertRecord(i, v, BASE, "X") for i, v in enumerate(np.vstack([vectors, extra]))]
    )
    assert exact.kind(BASE) == "exact"
    overlaps = []
    for query in unit_rows(50, seed=6):
        truth = {hit.expert_id for hit in exact.search(query, BASE, k=10)}
        found = {hit.expert_id for hit in ann.search(query, BASE, k=10)}
        overlaps.append(len(truth & found) / 10)
    assert np.mean(overlaps) >= 0.95


def test_filters_and_exclusions_hold_on_the_ann_index():
    config = IndexConfig(ann_threshold=500, exact_filter_limit=100)
    index, vectors = filled_index(3000, config)
    assert index.kind(BASE) == "hnsw"
    ids = np.arange(3000)
    lora = ids % 2 == 0
    overlaps = []
    for query in unit_rows(30, seed=7):
        hits = index.search(query, BASE, k=10, peft_type="LORA", exclude=[0, 2, 4])
        assert all(hit.expert_id % 2 == 0 and hit.expert_id > 4 for hit in hits)
        truth = brute_force(vectors[lora & (ids > 4)], ids[lora & (ids > 4)], query, 10)
        overlaps.append(len(set(truth) & {hit.expert_id for hit in hits}) / 10)
    assert np.mean(overlaps) >= 0.95


def test_rebuild_replaces_all_content():
    index, vectors = filled_index(50)
    index.rebuild([ExpertRecord(100, vectors[0], "base-b", "LORA")])
    assert len(index) == 1 and index.base_models() == {"base-b"}


def test_concurrent_updates_and_searches_stay_consistent():
    index, _ = filled_index(200, IndexConfig(ann_threshold=300))
    extra = unit_rows(400, seed=9)

    def write() -> None:
        for i, vector in enumerate(extra):
            index.add(1000 + i, vector, BASE, "LORA")
            if i % 3 == 0:
                index.remove(i)

    def read() -> None:
        for query in unit_rows(200, seed=10):
            assert len(index.search(query, BASE, k=10, peft_type="LORA")) == 10

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(write), pool.submit(read)]:
            future.result()  # re-raises a failure from either thread
    assert len(index) == 200 + 400 - len(range(0, 200, 3)) and index.kind(BASE) == "hnsw"
