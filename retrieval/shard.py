"""The vectors of one base model's experts in one FAISS index, with tombstones and filters.

A slot is a vector's position in the FAISS index (its FAISS label). Removing or replacing an expert
only marks its old slot dead; searches skip dead slots through an `IDSelectorBitmap`, and the
shard rebuilds itself (compacts) once too many slots are dead. Filters on PEFT type and tags use
posting sets of slots, so a filtered search costs in proportion to what the filter selects, never
a pass over the whole table in Python.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import faiss
import numpy as np

EXACT = "exact"
HNSW = "hnsw"


@dataclass(frozen=True)
class IndexConfig:
    """How an ExpertIndex trades speed for exactness.

    Defaults measured on 100,000 real task embeddings (bench/retrieval.py, 2 cores): HNSW with
    M=32, efConstruction=80, efSearch=128 gives recall@10 0.999 against exact search in ~0.4 ms
    (build 13-16 s). IVF-Flat (nlist 1264) needed nprobe=64 for recall 0.996 at the same cost and
    must be trained, then retrained as experts arrive, so the ANN index is HNSW. Exact search
    costs ~1 ms per 10,000 experts, so a shard stays exact up to 20,000.
    """

    # A base model's experts move from exact search to HNSW once this many are live.
    ann_threshold: int = 20_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128
    # A search for k hits widens efSearch to this many times k (up to hnsw_max_ef_search): the
    # fused search asks the graph for its top 50, and at 100,000 experts efSearch 128 found only
    # 0.946 of the exact top 50 for five-input queries, 512 found 0.998 (+1.1 ms).
    hnsw_ef_per_hit: int = 10
    # The largest efSearch a selective filter may raise the search to.
    hnsw_max_ef_search: int = 1024
    # Filtered candidate sets up to this size are scored exactly, without the ANN graph.
    exact_filter_limit: int = 4096
    # Compact (rebuild) a shard once this fraction of its slots is dead.
    max_dead_fraction: float = 0.25


class Hit(NamedTuple):
    """One expert found: `score` ranks it; `dense`, `lexical` and `description` are the parts it
    was fused from (`retrieval.fusion`).

    A part is None where no second stage scored the expert (a dense-only search) or the expert
    has no vector for it (stored before such vectors existed: `compeft-hub reembed` adds them).
    """

    expert_id: int
    score: float
    dense: float
    lexical: float | None = None
    description: float | None = None


@dataclass(frozen=True)
class ExpertAttributes:
    peft_type: str
    tags: frozenset[str]

    def posting_keys(self) -> list[tuple[str, str]]:
        return [("peft_type", self.peft_type), *(("tag", tag) for tag in self.tags)]


class BaseModelShard:
    """All experts of one base model. Not thread-safe: ExpertIndex serialises access."""

    def __init__(self, dim: int, config: IndexConfig) -> None:
        self._dim = dim
        self._config = config
        self._index: faiss.Index = self._new_index(ann=False)
        self._slot_ids = np.empty(0, dtype=np.int64)  # slot -> expert id, -1 once dead
        self._slot_of: dict[int, int] = {}
        self._attributes: dict[int, ExpertAttributes] = {}
        self._postings: dict[tuple[str, str], set[int]] = {}

    def __len__(self) -> int:
        return len(self._slot_of)

    @property
    def kind(self) -> str:
        return HNSW if isinstance(self._index, faiss.IndexHNSW) else EXACT

    def upsert(
        self, expert_ids: Sequence[int], vectors: np.ndarray, attributes: Sequence[ExpertAttributes]
    ) -> None:
        """Add or replace experts; ids must be distinct and vectors unit-length float32 rows."""
        self.remove(expert_id for expert_id in expert_ids if expert_id in self._slot_of)
        first_slot = self._index.ntotal
        self._index.add(vectors)
        self._grow_slot_ids(first_slot + len(expert_ids))
        self._slot_ids[first_slot : first_slot + len(expert_ids)] = expert_ids
        for slot, expert_id, expert_attributes in zip(
            range(first_slot, first_slot + len(expert_ids)), expert_ids, attributes, strict=True
        ):
            self._index_attributes(expert_id, slot, expert_attributes)
        if self.kind == EXACT and len(self) >= self._config.ann_threshold:
            self._rebuild()

    def remove(self, expert_ids: Iterable[int]) -> None:
        """Mark the experts' slots dead; compacts the shard when too many are dead."""
        for expert_id in list(expert_ids):
            slot = self._slot_of.pop(expert_id)
            self._slot_ids[slot] = -1
            for key in self._attributes.pop(expert_id).posting_keys():
                slots = self._postings[key]
                slots.discard(slot)
                if not slots:
                    del self._postings[key]
        if self._dead_count() > self._config.max_dead_fraction * self._index.ntotal:
            self._rebuild()

    def search(
        self,
        query: np.ndarray,
        k: int,
        peft_type: str | None,
        tags: Collection[str],
        exclude: Collection[int],
    ) -> list[Hit]:
        """Top-k live experts by inner product that match every filter, best first."""
        excluded_slots = [self._slot_of[e] for e in exclude if e in self._slot_of]
        candidates = self._filtered_slots(peft_type, tags)
        if candidates is not None:
            candidates.difference_update(excluded_slots)
            if len(candidates) <= self._config.exact_filter_limit:
                return self._exact_search(query, candidates, k)
            allowed = np.zeros(self._index.ntotal, dtype=bool)
            allowed[np.fromiter(candidates, dtype=np.int64, count=len(candidates))] = True
        elif excluded_slots or self._dead_count():
            allowed = self._slot_ids[: self._index.ntotal] >= 0
            allowed[excluded_slots] = False
        else:
            allowed = None
        return self._index_search(query, k, allowed)

    def _index_attributes(self, expert_id: int, slot: int, attributes: ExpertAttributes) -> None:
        self._slot_of[expert_id] = slot
        self._attributes[expert_id] = attributes
        for key in attributes.posting_keys():
            self._postings.setdefault(key, set()).add(slot)

    def _filtered_slots(self, peft_type: str | None, tags: Collection[str]) -> set[int] | None:
        """A fresh set of the live slots matching all filters, or None when nothing filters."""
        keys = [("tag", tag) for tag in tags]
        if peft_type is not None:
            keys.append(("peft_type", peft_type))
        if not keys:
            return None
        postings = sorted((self._postings.get(key, set()) for key in keys), key=len)
        return postings[0].intersection(*postings[1:])

    def _exact_search(self, query: np.ndarray, slots: Collection[int], k: int) -> list[Hit]:
        if not slots:
            return []
        slot_array = np.fromiter(slots, dtype=np.int64, count=len(slots))
        with _single_threaded_faiss():
            scores, best = faiss.knn(
                query.reshape(1, -1),
                self._index.reconstruct_batch(slot_array),
                min(k, len(slot_array)),
                metric=faiss.METRIC_INNER_PRODUCT,
            )
        return [
            Hit(int(self._slot_ids[slot_array[i]]), float(score), float(score))
            for i, score in zip(best[0], scores[0], strict=True)
        ]

    def _index_search(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> list[Hit]:
        """FAISS search restricted to the `allowed` slots (all slots when None)."""
        bitmap = None
        config = self._config
        ef_search = max(
            config.hnsw_ef_search, min(config.hnsw_ef_per_hit * k, config.hnsw_max_ef_search), k
        )
        if allowed is not None:
            allowed_count = int(np.count_nonzero(allowed))
            if allowed_count == 0:
                return []
            bitmap = np.packbits(allowed, bitorder="little")
            # A selector hides part of the graph; widen the beam so k allowed hits are still found.
            widened = math.ceil(ef_search * self._index.ntotal / allowed_count)
            ef_search = max(ef_search, min(widened, self._config.hnsw_max_ef_search))
        selector = (
            None if bitmap is None else faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        )
        if self.kind == HNSW:
            params = faiss.SearchParametersHNSW(efSearch=ef_search, sel=selector)
        else:
            params = faiss.SearchParameters(sel=selector)
        with _single_threaded_faiss():
            scores, slots = self._index.search(query.reshape(1, -1), k, params=params)
        return [
            Hit(int(self._slot_ids[slot]), float(score), float(score))
            for slot, score in zip(slots[0], scores[0], strict=True)
            if slot >= 0
        ]

    def _rebuild(self) -> None:
        """Re-create the FAISS index from the live vectors: drops dead slots, picks exact or HNSW."""
        live_slots = np.flatnonzero(self._slot_ids[: self._index.ntotal] >= 0)
        vectors = self._index.reconstruct_n(0, self._index.ntotal)[live_slots]
        expert_ids = self._slot_ids[live_slots]
        attributes = [self._attributes[int(expert_id)] for expert_id in expert_ids]
        self._index = self._new_index(ann=len(live_slots) >= self._config.ann_threshold)
        self._index.add(vectors)
        self._slot_ids = expert_ids.copy()
        self._slot_of, self._attributes, self._postings = {}, {}, {}
        for slot, (expert_id, expert_attributes) in enumerate(zip(expert_ids, attributes)):
            self._index_attributes(int(expert_id), slot, expert_attributes)

    def _new_index(self, *, ann: bool) -> faiss.Index:
        if not ann:
            return faiss.IndexFlatIP(self._dim)
        index = faiss.IndexHNSWFlat(self._dim, self._config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self._config.hnsw_ef_construction
        return index

    def _grow_slot_ids(self, size: int) -> None:
        """Amortised growth: appending one expert at a time must not copy the table each time."""
        if size > len(self._slot_ids):
            grown = np.full(max(size, 2 * len(self._slot_ids)), -1, dtype=np.int64)
            grown[: len(self._slot_ids)] = self._slot_ids
            self._slot_ids = grown

    def _dead_count(self) -> int:
        return self._index.ntotal - len(self._slot_of)


@contextmanager
def _single_threaded_faiss() -> Iterator[None]:
    """Run one query's FAISS work on the calling thread only.

    One query gains nothing from FAISS's OpenMP pool, and the pool's threads keep spinning after
    a search, taking a core from the next query embedding (measured on 2 cores: +6 ms per query
    embedding, flat-search p99 15 ms instead of 1.4 ms). The setting is per calling thread, so
    index builds elsewhere keep their threads.
    """
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)
