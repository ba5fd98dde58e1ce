"""Search latency and ANN recall of the expert index at 10,000 and 100,000 experts.

Experts are generated task descriptions (framing x task x object x topic x detail, so no two are
the same) embedded with the real TaskEmbedder; the embeddings are cached under bench/.cache/.
A query is a generated request timed server-side from text to ranked expert ids: the query
embedding plus the index search, as the search endpoint does it. Exact search (IndexFlatIP) runs
in the same process on the same queries: it is the latency baseline and the truth for recall@10.

    python -m bench.retrieval            # N = 10,000 and 100,000 (the first run embeds for minutes)
    python -m bench.retrieval --quick    # N = 2,000 in seconds; run by tests/test_bench_retrieval.py
    python -m bench.retrieval --registry # through the registry's service code and SQLite (below)

With --registry, each expert is committed by `registry.services.publish.publish_revision` (the upload
path's blob put and SQL commit, with its precomputed task vector) into a fresh embedded registry,
each index is built from SQL as an API process builds it at start, and a query goes through
`ExpertSearch.search`: counter check, query embedding, index search, hydration from SQL.

The last line is one JSON object for the largest N: n, p50_ms, p99_ms (HNSW, the ANN index),
recall_at_10, and context (the exact baseline, the query embedding alone, which backend).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from safetensors.torch import save_file
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from registry.db.engine import create_db_engine, create_session_factory
from registry.db.models import User
from registry.db.schema import upgrade_schema
from registry.ids import ExpertId
from registry.services.accounts import create_user
from registry.services.ingest import CompressedUpload, ReceivedUpload, compress_upload
from registry.services.publish import publish_revision
from registry.services.search import ExpertSearch
from registry.services.vectors import TaskEmbedding
from registry.settings import Settings
from registry.wire.experts import UploadMetadata
from registry.wire.search import SearchRequest
from retrieval.embedder import TaskEmbedder
from retrieval.index import ExpertIndex, ExpertRecord
from retrieval.shard import IndexConfig
from storage import BlobStore, open_blob_store

BASE_MODEL = "bench-base-model"
K = 10
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
EMBED_CHUNK = 4096

FRAMINGS = (
    "{Task} about {topic}{detail}.",
    "Adapter trained to {task} about {topic}{detail}.",
    "LoRA expert that can {task} on {topic}{detail}.",
    "Fine-tuned to {task} covering {topic}{detail}.",
)
QUERY_FRAMINGS = (
    "I need a model that can {task} about {topic}{detail}",
    "{task} on {topic}",
    "looking for an adapter to {task} covering {topic}",
)
TASKS = (
    "summarise {obj}",
    "classify the sentiment of {obj}",
    "translate {obj} into French",
    "translate {obj} into German",
    "extract named entities from {obj}",
    "answer questions about {obj}",
    "detect toxic language in {obj}",
    "write headlines for {obj}",
    "correct the grammar of {obj}",
    "paraphrase {obj}",
    "classify the topic of {obj}",
    "detect spam among {obj}",
    "extract keywords from {obj}",
    "generate replies to {obj}",
    "rate the readability of {obj}",
    "detect sarcasm in {obj}",
    "find factual errors in {obj}",
    "simplify {obj}",
    "tag the intent of {obj}",
    "summarise {obj} as bullet points",
    "extract dates and places from {obj}",
    "rewrite {obj} in a formal tone",
    "detect the language of {obj}",
    "score the relevance of {obj}",
    "classify the urgency of {obj}",
)
OBJECTS = (
    "news articles", "tweets", "customer emails", "scientific abstracts", "legal contracts",
    "product reviews", "clinical notes", "forum posts", "movie reviews", "recipes",
    "support tickets", "patent claims", "job postings", "financial reports", "song lyrics",
    "restaurant reviews", "chat messages", "meeting transcripts", "textbook paragraphs",
    "travel blogs",
)  # fmt: skip
TOPICS = (
    "climate policy", "football", "cryptocurrency", "public health", "machine learning",
    "elections", "space exploration", "real estate", "video games", "nutrition",
    "renewable energy", "banking", "tourism", "education", "cybersecurity", "agriculture",
    "fashion", "automobiles", "pharmaceuticals", "music festivals", "immigration",
    "stock markets", "wildlife", "smartphones", "mental health", "aviation", "insurance",
    "architecture", "basketball", "tennis", "chess", "cooking", "gardening", "parenting",
    "retail", "shipping", "oil and gas", "semiconductors", "quantum computing", "taxation",
    "labour law", "human rights", "urban planning", "public transport", "the film industry",
    "photography", "astronomy", "genetics", "vaccines", "dentistry", "pets", "fitness",
    "cycling", "hiking", "wine", "coffee", "e-commerce", "social media", "telecommunications",
    "startups",
)  # fmt: skip
DETAILS = (
    "", " in one sentence", " for a general audience", " for domain experts",
    " with short answers", " in British English", " written by non-native speakers",
    " from the last decade", " with noisy OCR text", " in a friendly tone", " for a mobile app",
    " at scale",
)  # fmt: skip
PEFT_TYPES = ("LORA", "IA3")


class SearchBackend(Protocol):
    """Where the bench's experts live and how a query text becomes ranked expert ids."""

    def insert(self, descriptions: Sequence[str], vectors: np.ndarray) -> None:
        """Store experts 0..len-1 with these descriptions and precomputed task vectors."""

    def search(self, query: str, k: int) -> list[int]:
        """Expert ids for a query text, best first, including the query embedding."""


@dataclass
class InProcessBackend:
    """An ExpertIndex in this process; a query is embedded, then searched."""

    embedder: TaskEmbedder
    index: ExpertIndex

    def insert(self, descriptions: Sequence[str], vectors: np.ndarray) -> None:
        self.index.update(
            upserts=[
                ExpertRecord(expert_id, vector, BASE_MODEL, PEFT_TYPES[expert_id % 2])
                for expert_id, vector in enumerate(vectors)
            ]
        )

    def search(self, query: str, k: int) -> list[int]:
        vector = self.embedder.embed_query(query)
        return [hit.expert_id for hit in self.index.search(vector, BASE_MODEL, k)]


BackendFactory = Callable[[TaskEmbedder, IndexConfig], SearchBackend]


def in_process_backend(embedder: TaskEmbedder, config: IndexConfig) -> SearchBackend:
    return InProcessBackend(embedder, ExpertIndex(embedder.dim, config))


REGISTRY_OWNER = "bench"


class RegistryDatabase:
    """An embedded registry (SQLite file + blob folder) shared by every registry backend of a run.

    Experts are nested across sizes (the first n are those of size n), so each backend publishes
    only the experts the database still lacks, then builds its own index from SQL.
    """

    def __init__(self, folder: Path) -> None:
        settings = Settings(data_dir=folder)
        self._engine: Engine = create_db_engine(settings.sqlalchemy_url)
        upgrade_schema(self._engine)
        self.sessions: sessionmaker[Session] = create_session_factory(self._engine)
        self._store: BlobStore = open_blob_store(settings.storage_url)
        with self.sessions() as session:
            create_user(session, name=REGISTRY_OWNER)
        self._upload = _compressed_adapter(folder / "adapter")
        self._published = 0

    def backend(self, embedder: TaskEmbedder, config: IndexConfig) -> SearchBackend:
        return RegistryBackend(self, ExpertSearch(self.sessions, embedder, config))

    def publish(
        self, descriptions: Sequence[str], vectors: np.ndarray, embedder: TaskEmbedder
    ) -> None:
        """Commit experts `published..len(descriptions)-1`, one upload transaction each."""
        started, first = time.perf_counter(), self._published
        if first >= len(descriptions):
            return
        with self.sessions() as session:
            owner = session.scalars(select(User).where(User.name == REGISTRY_OWNER)).one()
            for number in tqdm(range(first, len(descriptions)), desc="publishing", unit="expert"):
                metadata = UploadMetadata(task_description=descriptions[number])
                publish_revision(
                    session,
                    self._store,
                    expert_id=ExpertId(REGISTRY_OWNER, f"e{number}"),
                    owner=owner,
                    upload=dataclasses.replace(self._upload, metadata=metadata),
                    embedding=TaskEmbedding(embedder.name, embedder.version, vectors[number]),
                )
        self._published = len(descriptions)
        elapsed = time.perf_counter() - started
        count = self._published - first
        print(f"published {count:,} experts through publish_revision in {elapsed:.1f} s "
              f"({count / elapsed:,.0f}/s)")  # fmt: skip

    def close(self) -> None:
        self._engine.dispose()


def _compressed_adapter(folder: Path) -> CompressedUpload:
    """One small LoRA adapter of BASE_MODEL through the upload path's validation and ComPEFT."""
    folder.mkdir(parents=True)
    config = {"peft_type": "LORA", "base_model_name_or_path": BASE_MODEL, "r": 4,
              "lora_alpha": 8, "target_modules": ["q_proj"]}  # fmt: skip
    (folder / "adapter_config.json").write_text(json.dumps(config))
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    generator = torch.Generator().manual_seed(0)
    tensors = {
        f"{prefix}.lora_A.weight": torch.randn(4, 64, generator=generator),
        f"{prefix}.lora_B.weight": torch.randn(64, 4, generator=generator),
    }
    save_file(tensors, folder / "adapter_model.safetensors")
    (folder / "metadata.json").write_text(json.dumps({"task_description": "template"}))
    received = ReceivedUpload(
        folder / "adapter_config.json",
        folder / "adapter_model.safetensors",
        folder / "metadata.json",
    )
    return compress_upload(
        received, UploadMetadata(task_description="template"), Settings(max_tensors=10)
    )


@dataclass
class RegistryBackend:
    """One API process's search service over the shared registry database."""

    database: RegistryDatabase
    service: ExpertSearch

    def insert(self, descriptions: Sequence[str], vectors: np.ndarray) -> None:
        self.database.publish(descriptions, vectors, self.service.embedder)
        rebuild_s = _timed(self.service.rebuild)
        kind = self.service.index.kind(BASE_MODEL)
        print(f"{kind} index of {len(descriptions):,} experts built from SQL in {rebuild_s:.1f} s")

    def search(self, query: str, k: int) -> list[int]:
        request = SearchRequest(query=query, base_model=BASE_MODEL, k=k)
        with self.database.sessions() as session:
            results = self.service.search(session, request).results
        return [int(result.id.rsplit("/e", 1)[1]) for result in results]


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        p50, p99 = np.percentile(np.asarray(seconds) * 1000, [50, 99])
        return cls(float(p50), float(p99))


@dataclass(frozen=True)
class SizeResult:
    n: int
    default_kind: str
    exact_insert_s: float
    ann_insert_s: float
    exact: Latency
    ann: Latency
    recall_at_10: float
    cpu_pressure: float | None


def generate_descriptions(n: int, seed: int = 0) -> list[str]:
    """n distinct task descriptions; the first m of n are the descriptions for m (nested sets)."""
    sizes = (len(FRAMINGS), len(TASKS), len(OBJECTS), len(TOPICS), len(DETAILS))
    codes = np.random.default_rng(seed).choice(int(np.prod(sizes)), size=n, replace=False)
    descriptions = []
    for framing, task, obj, topic, detail in zip(*np.unravel_index(codes, sizes), strict=True):
        task_text = TASKS[task].format(obj=OBJECTS[obj])
        descriptions.append(
            FRAMINGS[framing].format(
                Task=task_text[0].upper() + task_text[1:],
                task=task_text,
                topic=TOPICS[topic],
                detail=DETAILS[detail],
            )
        )
    return descriptions


def generate_queries(n: int, seed: int = 1) -> list[str]:
    """n request texts in the words a user might type (not copies of any description)."""
    rng = np.random.default_rng(seed)
    return [
        QUERY_FRAMINGS[rng.integers(len(QUERY_FRAMINGS))].format(
            task=TASKS[rng.integers(len(TASKS))].format(obj=OBJECTS[rng.integers(len(OBJECTS))]),
            topic=TOPICS[rng.integers(len(TOPICS))],
            detail=DETAILS[rng.integers(len(DETAILS))],
        )
        for _ in range(n)
    ]


def embed_descriptions(
    embedder: TaskEmbedder, descriptions: Sequence[str], cache_dir: Path | None
) -> np.ndarray:
    """Task vectors of description-only experts, reused from `cache_dir` when present."""
    digest = hashlib.sha256(
        "\n".join([embedder.name, embedder.version, *descriptions]).encode()
    ).hexdigest()[:16]
    cache_file = (
        None if cache_dir is None else cache_dir / f"experts-{len(descriptions)}-{digest}.npy"
    )
    if cache_file is not None and cache_file.exists():
        return np.load(cache_file)
    started = time.perf_counter()
    chunks = [
        embedder.embed_tasks([(text, ()) for text in descriptions[start : start + EMBED_CHUNK]])
        for start in tqdm(range(0, len(descriptions), EMBED_CHUNK), desc="embedding", unit="chunk")
    ]
    vectors = np.concatenate(chunks)
    elapsed = time.perf_counter() - started
    print(f"embedded {len(descriptions):,} descriptions in {elapsed:.1f} s "
          f"({len(descriptions) / elapsed:,.0f}/s)")  # fmt: skip
    if cache_file is not None:
        cache_dir.mkdir(exist_ok=True)
        (cache_dir / ".gitignore").write_text("*\n")
        np.save(cache_file, vectors)
    return vectors


def measure_size(
    make_backend: BackendFactory,
    embedder: TaskEmbedder,
    descriptions: Sequence[str],
    vectors: np.ndarray,
    queries: Sequence[str],
) -> SizeResult:
    """Latency of exact and HNSW backends on the same queries, and HNSW's recall@10 vs exact."""
    exact_backend = make_backend(embedder, IndexConfig(ann_threshold=len(descriptions) + 1))
    ann_backend = make_backend(embedder, IndexConfig(ann_threshold=1))
    exact_insert_s = _timed(lambda: exact_backend.insert(descriptions, vectors))
    ann_insert_s = _timed(lambda: ann_backend.insert(descriptions, vectors))
    for query in queries[:5]:  # warm caches and lazy paths before timing
        exact_backend.search(query, K)
        ann_backend.search(query, K)
    exact_s, ann_s, overlaps = [], [], []
    pressure = CpuPressure.start()
    for query in queries:  # interleaved, so load from other processes hits both alike
        started = time.perf_counter()
        truth = exact_backend.search(query, K)
        exact_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        found = ann_backend.search(query, K)
        ann_s.append(time.perf_counter() - started)
        overlaps.append(len(set(truth) & set(found)) / len(truth))
    default_kind = "hnsw" if len(descriptions) >= IndexConfig().ann_threshold else "exact"
    return SizeResult(
        n=len(descriptions),
        default_kind=default_kind,
        exact_insert_s=exact_insert_s,
        ann_insert_s=ann_insert_s,
        exact=Latency.of(exact_s),
        ann=Latency.of(ann_s),
        recall_at_10=float(np.mean(overlaps)),
        cpu_pressure=pressure.share(),
    )


@dataclass(frozen=True)
class CpuPressure:
    """Share of wall time in which some task waited for a CPU (Linux PSI), to read timings by.

    On a shared machine other processes inflate latencies; a high share flags such a run.
    """

    stalled_us: int | None
    started: float

    @classmethod
    def start(cls) -> CpuPressure:
        return cls(_cpu_stalled_us(), time.perf_counter())

    def share(self) -> float | None:
        now = _cpu_stalled_us()
        if now is None or self.stalled_us is None:
            return None
        return (now - self.stalled_us) / 1e6 / (time.perf_counter() - self.started)


def _cpu_stalled_us() -> int | None:
    try:
        first_line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return None
    return int(first_line.rsplit("total=", 1)[1])


def _timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def report(result: SizeResult) -> None:
    print(f"N={result.n:,} (default config serves this size with {result.default_kind} search)")
    print(f"  insert: exact {result.exact_insert_s:.1f} s, hnsw {result.ann_insert_s:.1f} s")
    for name, latency in (("exact", result.exact), ("hnsw", result.ann)):
        print(f"  {name:5} query p50 {latency.p50_ms:6.2f} ms  p99 {latency.p99_ms:6.2f} ms")
    print(
        f"  hnsw/exact: p50 x{result.ann.p50_ms / result.exact.p50_ms:.2f}, "
        f"p99 x{result.ann.p99_ms / result.exact.p99_ms:.2f}; "
        f"recall@10 vs exact {result.recall_at_10:.4f}"
    )
    if result.cpu_pressure is not None:
        print(f"  CPU pressure: some task waited for a CPU {result.cpu_pressure:.0%} of the time")


def main(
    argv: Sequence[str] | None = None, make_backend: BackendFactory = in_process_backend
) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 2,000 and 200 queries, no cache")
    parser.add_argument(
        "--registry",
        action="store_true",
        help="insert through the registry's upload service into SQLite, search through its "
        "search service (inserting 100,000 experts takes minutes)",
    )
    args = parser.parse_args(argv)
    sizes, query_count = ((2_000,), 200) if args.quick else ((10_000, 100_000), 500)
    if args.registry:
        with tempfile.TemporaryDirectory(prefix="bench-registry-") as folder:
            database = RegistryDatabase(Path(folder))
            try:
                _run(sizes, query_count, database.backend, "registry", cache=not args.quick)
            finally:
                database.close()
    else:
        _run(sizes, query_count, make_backend, "in-process", cache=not args.quick)


def _run(
    sizes: Sequence[int],
    query_count: int,
    make_backend: BackendFactory,
    backend_name: str,
    *,
    cache: bool,
) -> None:
    embedder = TaskEmbedder()
    descriptions = generate_descriptions(max(sizes))
    vectors = embed_descriptions(embedder, descriptions, CACHE_DIR if cache else None)
    queries = generate_queries(query_count)
    embed_s = []
    for query in queries:
        embed_s.append(_timed(lambda q=query: embedder.embed_query(q)))
    embed_latency = Latency.of(embed_s)
    print(
        f"query embedding alone: p50 {embed_latency.p50_ms:.2f} ms  p99 {embed_latency.p99_ms:.2f} ms"
    )
    results = []
    for n in sizes:
        results.append(measure_size(make_backend, embedder, descriptions[:n], vectors[:n], queries))
        report(results[-1])
    largest = results[-1]
    pressure = largest.cpu_pressure
    print(
        json.dumps(
            {
                "n": largest.n,
                "p50_ms": round(largest.ann.p50_ms, 3),
                "p99_ms": round(largest.ann.p99_ms, 3),
                "recall_at_10": round(largest.recall_at_10, 4),
                "index": "hnsw",
                "default_index_at_n": largest.default_kind,
                "exact_p50_ms": round(largest.exact.p50_ms, 3),
                "exact_p99_ms": round(largest.exact.p99_ms, 3),
                "embed_p50_ms": round(embed_latency.p50_ms, 3),
                "cpu_pressure": None if pressure is None else round(pressure, 3),
                "queries": len(queries),
                "backend": backend_name,
            }
        )
    )


if __name__ == "__main__":
    main()
