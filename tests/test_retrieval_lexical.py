"""Lexical vectors (hashed character n-grams): the formula, truncation, bytes and scores."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize

from retrieval.errors import RetrievalError
from retrieval.lexical import (
    HASH_FEATURES,
    MAX_TERMS,
    LexicalEncoder,
    LexicalVector,
    lexical_scores,
)

ENCODER = LexicalEncoder()


def encode(*texts: str) -> LexicalVector:
    [vector] = ENCODER.encode([list(texts)])
    return vector


def as_sparse(vectors: list[LexicalVector]) -> csr_matrix:
    rows = np.repeat(np.arange(len(vectors)), [len(v) for v in vectors])
    columns = np.concatenate([v.indices for v in vectors]).astype(np.int64)
    values = np.concatenate([v.values for v in vectors])
    return csr_matrix((values, (rows, columns)), shape=(len(vectors), HASH_FEATURES))


def test_a_vector_is_scikit_learns_sublinear_hashed_char_ngrams_normalised() -> None:
    text = "Where is the train station? Where is the bus?"
    counts = HashingVectorizer(
        analyzer="char_wb", ngram_range=(1, 3), alternate_sign=False, norm=None
    ).transform([text])
    counts.data = 1.0 + np.log(counts.data)
    expected = normalize(counts).toarray()[0]
    vector = encode(text)
    assert np.all(np.diff(vector.indices.astype(np.int64)) > 0)
    np.testing.assert_array_equal(vector.indices, np.flatnonzero(expected))
    np.testing.assert_allclose(vector.values, expected[vector.indices], rtol=1e-6)


def test_cosines_of_same_similar_and_unrelated_texts() -> None:
    card = encode("Translate English into French.", "Where is the train station?")
    same = encode("Translate English into French.", "Where is the train station?")
    similar = encode("Where is the nearest station?")
    unrelated = encode("你们这里有什么好吃的")
    one, near, none = lexical_scores(card, [same, similar, unrelated])
    assert one == pytest.approx(1.0, abs=1e-6)
    assert 0.3 < near < 1.0
    assert none < 0.15  # only the word-boundary space is shared


def test_a_long_card_keeps_its_max_terms_largest_weights() -> None:
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("defghijklmnopqrstuvwxyz"), 6)) for _ in range(2000)]
    vector = encode(" ".join(words), "abc abc abc abc")
    assert len(vector) == MAX_TERMS
    assert np.linalg.norm(vector.values) == pytest.approx(1.0, abs=1e-6)
    # Each n-gram of "abc" occurs at least 4 times, the random words' trigrams about once.
    assert set(encode("abc").indices) <= set(vector.indices)


def test_bytes_round_trip_at_float16_precision() -> None:
    vector = encode("Summarise news articles.", "Shares fell 8% after the forecast cut.")
    back = LexicalVector.from_bytes(vector.to_bytes())
    assert len(vector.to_bytes()) == 6 * len(vector)
    np.testing.assert_array_equal(back.indices, vector.indices)
    np.testing.assert_allclose(back.values, vector.values, atol=1e-3)


def _bytes(indices: list[int], values: list[float]) -> bytes:
    return np.array(indices, dtype="<u4").tobytes() + np.array(values, dtype="<f2").tobytes()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00" * 7, "not 6 per term"),
        (b"\x00" * 6 * (MAX_TERMS + 1), "not 6 per term"),
        (_bytes([5, 3], [0.6, 0.8]), "not sorted distinct"),
        (_bytes([3, 3], [0.6, 0.8]), "not sorted distinct"),
        (_bytes([1, HASH_FEATURES], [0.6, 0.8]), "not sorted distinct"),
        (_bytes([1, 2], [float("nan"), 0.8]), "non-finite"),
    ],
    ids=["ragged", "too-many", "unsorted", "duplicate", "out-of-range", "nan"],
)
def test_malformed_bytes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(RetrievalError, match=message):
        LexicalVector.from_bytes(data)


def test_scores_equal_the_sparse_dot_product_and_zero_for_missing_vectors() -> None:
    texts = [f"task {i}: " + " ".join(str(j * i) for j in range(30)) for i in range(20)]
    cards = ENCODER.encode([[text] for text in texts])
    query = encode("task 7: 0 7 14 21 28 35 tasks")
    expected = (as_sparse([query]) @ as_sparse(cards).T).toarray()[0]
    scores = lexical_scores(query, [*cards, None])
    np.testing.assert_allclose(scores[:-1], expected, atol=1e-6)
    assert scores[-1] == 0.0
    assert np.all(lexical_scores(LexicalVector(np.empty(0, np.uint32), np.empty(0)), cards) == 0)
