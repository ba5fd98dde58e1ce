"""ExpertIndex: cosine search over expert task vectors, one FAISS shard per base model.

A query always names a base model (adapters only fit the model they were trained on), so each base
model gets its own shard and the query's base model picks it: filtering by base model costs
nothing. PEFT-type and tag filters are applied inside the shard (see `retrieval.shard`).
The index is a cache of the registry's SQL rows; `retrieval.sync` keeps it in step.

A search may carry a second stage (`retrieval.fusion`): the dense stage's best hits are then
re-scored with the experts' description and lexical vectors, which the index keeps beside the
FAISS shards, and ranked by the fused score.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike

from retrieval.errors import RetrievalError, UnknownBaseModelError
from retrieval.fusion import SecondStage, rerank_depth, reranked
from retrieval.lexical import LexicalVector
from retrieval.limits import MAX_K
from retrieval.shard import BaseModelShard, ExpertAttributes, Hit, IndexConfig

V = TypeVar("V")


@dataclass(frozen=True)
class ExpertRecord:
    """What the index keeps about one expert: one row of the registry's expert table."""

    expert_id: int
    vector: ArrayLike
    base_model: str
    peft_type: str
    tags: Collection[str] = field(default_factory=frozenset)
    lexical: LexicalVector | None = None
    description: ArrayLike | None = None  # the embedding of the card's description alone


class ExpertIndex:
    """Thread-safe top-k search over normalised float32 vectors keyed by integer expert ids.

    Scores are cosine similarities (vectors are normalised on the way in). A base model's shard is
    exact (`IndexFlatIP`) until it holds `config.ann_threshold` experts, then HNSW.
    """

    def __init__(self, dim: int, config: IndexConfig | None = None) -> None:
        self._dim = dim
        self._config = config or IndexConfig()
        self._shards: dict[str, BaseModelShard] = {}
        self._base_model_of: dict[int, str] = {}
        self._lexical: dict[int, LexicalVector] = {}
        self._descriptions: dict[int, np.ndarray] = {}
        # Searches and writes exclude each other; writes also exclude each other for as long as a
        # rebuild takes, while searches keep reading the old shards.
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return len(self._base_model_of)

    def __contains__(self, expert_id: object) -> bool:
        return expert_id in self._base_model_of

    def base_models(self) -> frozenset[str]:
        """Base models with at least one indexed expert; others raise UnknownBaseModelError."""
        return frozenset(self._shards)

    def kind(self, base_model: str) -> str:
        """`"exact"` or `"hnsw"`: the search structure now serving `base_model`."""
        with self._lock:
            return self._shard(base_model).kind

    def add(
        self,
        expert_id: int,
        vector: ArrayLike,
        base_model: str,
        peft_type: str,
        tags: Iterable[str] = (),
    ) -> None:
        """Insert or replace one expert (an upsert: a second add with the same id wins)."""
        record = ExpertRecord(expert_id, vector, base_model, peft_type, frozenset(tags))
        self.update(upserts=[record])

    def remove(self, expert_id: int) -> bool:
        """Drop one expert; False when it was not indexed."""
        present = expert_id in self
        self.update(deletes=[expert_id])
        return present

    def update(self, upserts: Iterable[ExpertRecord] = (), deletes: Iterable[int] = ()) -> None:
        """Apply deletes, then upserts, as one change: a search sees all of it or none of it.

        An id both deleted and upserted ends up present (the upsert is the newer row); unknown
        deletes are ignored. Invalid vectors raise RetrievalError before anything changes.
        """
        records = list({record.expert_id: record for record in upserts}.values())
        vectors = _unit_rows([record.vector for record in records], self._dim)
        described = [record for record in records if record.description is not None]
        descriptions = dict(
            zip(
                (record.expert_id for record in described),
                _unit_rows([record.description for record in described], self._dim),
                strict=True,
            )
        )
        with self._write_lock, self._lock:
            upserted = {record.expert_id for record in records}
            moved = [
                r.expert_id
                for r in records
                if self._base_model_of.get(r.expert_id, r.base_model) != r.base_model
            ]
            self._remove([*(i for i in deletes if i not in upserted), *moved])
            positions_by_base_model: dict[str, list[int]] = {}
            for position, record in enumerate(records):
                positions_by_base_model.setdefault(record.base_model, []).append(position)
            for base_model, positions in positions_by_base_model.items():
                if base_model not in self._shards:
                    self._shards[base_model] = BaseModelShard(self._dim, self._config)
                shard = self._shards[base_model]
                batch = [records[position] for position in positions]
                shard.upsert(
                    [record.expert_id for record in batch],
                    vectors[positions],
                    [ExpertAttributes(r.peft_type, frozenset(r.tags)) for r in batch],
                )
                self._base_model_of.update((record.expert_id, base_model) for record in batch)
            for record in records:
                _put(self._lexical, record.expert_id, record.lexical)
                _put(self._descriptions, record.expert_id, descriptions.get(record.expert_id))

    def rebuild(self, records: Iterable[ExpertRecord]) -> None:
        """Replace the whole content with `records`; searches see the old content meanwhile."""
        with self._write_lock:
            fresh = ExpertIndex(self._dim, self._config)
            fresh.update(upserts=records)
            with self._lock:
                self._shards, self._base_model_of = fresh._shards, fresh._base_model_of
                self._lexical, self._descriptions = fresh._lexical, fresh._descriptions

    def search(
        self,
        vector: ArrayLike,
        base_model: str,
        k: int,
        peft_type: str | None = None,
        tags: Collection[str] = (),
        exclude: Collection[int] = (),
        second_stage: SecondStage | None = None,
    ) -> list[Hit]:
        """The k experts of `base_model` most similar to `vector`, best first.

        Only experts with the given PEFT type (when given) and all the given tags are returned;
        ids in `exclude` never are. Fewer than k hits come back when fewer match. With a
        `second_stage`, the dense stage's best max(k, RERANK_DEPTH) are ranked again by the fused
        score.
        """
        if isinstance(k, bool) or not isinstance(k, Integral) or not 1 <= k <= MAX_K:
            raise RetrievalError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
        if isinstance(tags, str):
            raise RetrievalError("tags must be a collection of strings, not one string")
        query = _unit_rows([vector], self._dim)[0]
        with self._lock:
            shard = self._shard(base_model)
            depth = int(k) if second_stage is None else rerank_depth(int(k))
            hits = shard.search(query, depth, peft_type, frozenset(tags), frozenset(exclude))
            if second_stage is None:
                return hits
            descriptions = [self._descriptions.get(hit.expert_id) for hit in hits]
            lexical = [self._lexical.get(hit.expert_id) for hit in hits]
        return reranked(hits, query, descriptions, lexical, second_stage)[: int(k)]

    def _shard(self, base_model: str) -> BaseModelShard:
        shard = self._shards.get(base_model)
        if shard is None:
            raise UnknownBaseModelError(f"no experts are indexed for base model {base_model!r}")
        return shard

    def _remove(self, expert_ids: Iterable[int]) -> None:
        ids_by_base_model: dict[str, list[int]] = {}
        for expert_id in expert_ids:
            base_model = self._base_model_of.pop(expert_id, None)
            self._lexical.pop(expert_id, None)
            self._descriptions.pop(expert_id, None)
            if base_model is not None:
                ids_by_base_model.setdefault(base_model, []).append(expert_id)
        for base_model, ids in ids_by_base_model.items():
            shard = self._shards[base_model]
            shard.remove(ids)
            if not len(shard):
                del self._shards[base_model]


def _put(vectors: dict[int, V], expert_id: int, vector: V | None) -> None:
    """Keep `vector` as the expert's, or forget the expert's old one when it has none now."""
    if vector is None:
        vectors.pop(expert_id, None)
    else:
        vectors[expert_id] = vector


def _unit_rows(vectors: Sequence[ArrayLike], dim: int) -> np.ndarray:
    """Vectors as unit-length float32 rows, or RetrievalError for a wrong shape, NaN or zero."""
    for vector in vectors:
        if np.shape(vector) != (dim,):
            raise RetrievalError(f"vector has shape {np.shape(vector)}, expected ({dim},)")
    rows = np.array(vectors, dtype=np.float32).reshape(len(vectors), dim)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise RetrievalError("vectors must be finite and non-zero")
    return rows / norms
