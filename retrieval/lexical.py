"""Lexical task vectors: hashed character n-grams of an expert's card, and of a query.

The dense MiniLM vector of a card blurs what tells close tasks apart: the script (simplified or
traditional Chinese), the names a party's speeches use, a news outlet's house words. Character
1-3-grams within word bounds catch those, and fused with the dense score (`retrieval.fusion`) they
lift top-1 of input queries on the hard real-task set from 0.56 to 0.72 (tuning part;
`bench/retrieval_methods.py`, docs/retrieval.md).

The n-grams are hashed (scikit-learn's HashingVectorizer), not counted against a fitted vocabulary:
a vector computed at upload then never goes stale as other experts arrive, which TF-IDF's corpus
statistics would. Term frequencies are sublinear (1 + log count), each vector keeps its
`MAX_TERMS` largest terms (bounded storage: long cards would otherwise hold thousands) and is
L2-normalised, so the dot product of two vectors is their cosine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer

from retrieval.errors import RetrievalError

NGRAM_RANGE = (1, 3)
HASH_FEATURES = 2**20
# Cards hold 550 terms on average on the real-task set; keeping at most 1,024 costs 0.01 top-1
# against keeping all (512: 0.02) and bounds an expert's vector at 6 KB.
MAX_TERMS = 1024
# Changes whenever the recipe above changes: stored vectors of another version are not comparable.
LEXICAL_VERSION = f"char_wb{NGRAM_RANGE[0]}-{NGRAM_RANGE[1]}.hash20.log1p.top{MAX_TERMS}.v1"
# Each text is cut to this many characters before hashing, as before embedding: hashing runs at
# about 1 MB/s, so this bounds the work a single upload can ask for.
LEXICAL_TEXT_CHARS = 4000

_INDEX_DTYPE = np.dtype("<u4")
_VALUE_DTYPE = np.dtype("<f2")
_TERM_BYTES = _INDEX_DTYPE.itemsize + _VALUE_DTYPE.itemsize


@dataclass(frozen=True)
class LexicalVector:
    """A sparse unit vector over hashed n-grams: sorted distinct indices and their values."""

    indices: np.ndarray  # uint32, strictly increasing
    values: np.ndarray  # float32, same length, L2 norm 1 (or empty)

    def __len__(self) -> int:
        return len(self.indices)

    def to_bytes(self) -> bytes:
        """Indices (uint32) then values (float16), little-endian: 6 bytes per term."""
        return (
            self.indices.astype(_INDEX_DTYPE).tobytes() + self.values.astype(_VALUE_DTYPE).tobytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> LexicalVector:
        """The vector `to_bytes` wrote, or RetrievalError when `data` cannot be one."""
        if len(data) % _TERM_BYTES or len(data) // _TERM_BYTES > MAX_TERMS:
            raise RetrievalError(
                f"a lexical vector of {len(data)} bytes is not {_TERM_BYTES} per term"
            )
        count = len(data) // _TERM_BYTES
        indices = np.frombuffer(data, dtype=_INDEX_DTYPE, count=count).astype(np.int64)
        values = np.frombuffer(data, dtype=_VALUE_DTYPE, offset=count * _INDEX_DTYPE.itemsize)
        if np.any(np.diff(indices) <= 0) or np.any(indices >= HASH_FEATURES):
            raise RetrievalError("a lexical vector's indices are not sorted distinct hash slots")
        if not np.all(np.isfinite(values)):
            raise RetrievalError("a lexical vector holds a non-finite value")
        return cls(indices.astype(np.uint32), values.astype(np.float32))


class LexicalEncoder:
    """Turns card and query texts into LexicalVectors. Stateless and thread-safe."""

    version = LEXICAL_VERSION

    def __init__(self) -> None:
        self._vectorizer = HashingVectorizer(
            analyzer="char_wb",
            ngram_range=NGRAM_RANGE,
            n_features=HASH_FEATURES,
            alternate_sign=False,
            norm=None,
        )

    def encode(self, texts: Sequence[Sequence[str]]) -> list[LexicalVector]:
        """One vector per group of texts (a card: description and inputs; a query: its texts)."""
        if not texts:
            return []
        joined = ["\n".join(text[:LEXICAL_TEXT_CHARS] for text in group) for group in texts]
        counts = self._vectorizer.transform(joined).tocsr()
        counts.sort_indices()
        return [
            _top_terms(
                counts.indices[start:end],
                counts.data[start:end],
            )
            for start, end in zip(counts.indptr[:-1], counts.indptr[1:], strict=True)
        ]


def _top_terms(indices: np.ndarray, counts: np.ndarray) -> LexicalVector:
    """Sublinear weights, the MAX_TERMS largest kept (ties by index), L2-normalised."""
    weights = 1.0 + np.log(counts.astype(np.float64))
    if len(weights) > MAX_TERMS:
        kept = np.sort(np.argsort(-weights, kind="stable")[:MAX_TERMS])
        indices, weights = indices[kept], weights[kept]
    norm = np.linalg.norm(weights)
    if norm > 0:
        weights = weights / norm
    return LexicalVector(indices.astype(np.uint32), weights.astype(np.float32))


def lexical_scores(query: LexicalVector, candidates: Sequence[LexicalVector | None]) -> np.ndarray:
    """Cosine of `query` with each candidate (0 for a candidate with no vector), vectorised."""
    scores = np.zeros(len(candidates), dtype=np.float64)
    present = [(i, c) for i, c in enumerate(candidates) if c is not None and len(c)]
    if not present or not len(query):
        return scores
    owners = np.repeat([i for i, _ in present], [len(c) for _, c in present])
    indices = np.concatenate([c.indices for _, c in present])
    values = np.concatenate([c.values for _, c in present])
    positions = np.searchsorted(query.indices, indices)
    positions[positions == len(query.indices)] = 0
    shared = query.indices[positions] == indices
    np.add.at(scores, owners[shared], query.values[positions[shared]] * values[shared])
    return scores
