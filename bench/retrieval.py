"""Search latency and ANN recall of the expert index at 10,000 and 100,000 experts.

Experts are generated task descriptions (framing x task x object x topic x detail, so no two are
the same) embedded with the real TaskEmbedder; the embeddings are cached under bench/.cache/.
Each card is a description only, so its description vector (the second stage's) is its task vector.
A query is timed server-side from its texts to ranked expert ids: the query embedding, its
lexical vector, the dense search and the fused re-ranking of the dense top 50, as the search
endpoint does it. Two kinds of query (`bench/retrieval_corpus.py`): five inputs of a real task
(the issue's latency goal) and generated words. Exact search (IndexFlatIP) runs in the same process
on the same queries: the truth for recall@10 of the fused HNSW ranking. The in-process run also
times today's dense-only HNSW search on the same index: the baseline of the second stage's cost.

    python -m bench.retrieval            # N = 10,000 and 100,000 (the first run embeds for minutes)
    python -m bench.retrieval --quick    # N = 2,000 in seconds; run by tests/test_bench_retrieval.py
    python -m bench.retrieval --registry # through the registry's service code and SQLite (below)

With --registry, each expert is committed by `registry.services.publish.publish_revision` (the upload
path's blob put and SQL commit, with its precomputed task vector) into a fresh embedded registry,
each index is built from SQL as an API process builds it at start, and a query goes through
`ExpertSearch.search`: counter check, query embedding, index search, hydration from SQL.

The last line is one JSON object for the largest N: n, p50_ms, p99_ms, recall_at_10 (5-input
queries, fused HNSW), the same for word queries (words_*), and context (exact search, the
dense-only baseline and its ratio, the query embedding alone, which backend).
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

from bench.retrieval_corpus import generate_descriptions, generate_input_queries, generate_queries
from registry.db.engine import create_db_engine, create_session_factory
from registry.db.models import User
from registry.db.schema import upgrade_schema
from registry.ids import ExpertId
from registry.services.accounts import create_user
from registry.services.ingest import CompressedUpload, ReceivedUpload, compress_upload
from registry.services.publish import publish_revision
from registry.services.search import ExpertSearch
from registry.services.vectors import TaskEmbedding, lexical_vectors, second_stage
from registry.settings import Settings
from registry.wire.experts import UploadMetadata
from registry.wire.search import SearchRequest
from retrieval.embedder import TaskEmbedder
from retrieval.index import ExpertIndex, ExpertRecord
from retrieval.lexical import LexicalVector
from retrieval.shard import IndexConfig
from storage import BlobStore, open_blob_store

BASE_MODEL = "bench-base-model"
K = 10
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
EMBED_CHUNK = 4096

PEFT_TYPES = ("LORA", "IA3")
Query = tuple[str | None, tuple[str, ...]]  # the words, the inputs


class SearchBackend(Protocol):
    """Where the bench's experts live and how a query becomes ranked expert ids."""

    def insert(
        self, descriptions: Sequence[str], vectors: np.ndarray, lexical: Sequence[LexicalVector]
    ) -> None:
        """Store experts 0..len-1 with these descriptions and precomputed task vectors."""

    def search(self, query: Query, k: int) -> list[int]:
        """Expert ids for a query, best first, including the query's embedding and hashing."""

    def dense_only(self) -> SearchBackend | None:
        """The same experts searched without the second stage, where the backend can."""


@dataclass
class InProcessBackend:
    """An ExpertIndex in this process; a query is embedded and hashed, then searched."""

    embedder: TaskEmbedder
    index: ExpertIndex
    fused: bool = True

    def insert(
        self, descriptions: Sequence[str], vectors: np.ndarray, lexical: Sequence[LexicalVector]
    ) -> None:
        self.index.update(
            upserts=[
                ExpertRecord(
                    expert_id,
                    vector,
                    BASE_MODEL,
                    PEFT_TYPES[expert_id % 2],
                    lexical=lexical[expert_id],
                    description=vector,  # a card of a description only: the same vector
                )
                for expert_id, vector in enumerate(vectors)
            ]
        )

    def search(self, query: Query, k: int) -> list[int]:
        words, inputs = query
        vector = self.embedder.embed_query(words, inputs)
        stage = second_stage(words, inputs) if self.fused else None
        hits = self.index.search(vector, BASE_MODEL, k, second_stage=stage)
        return [hit.expert_id for hit in hits]

    def dense_only(self) -> SearchBackend:
        return dataclasses.replace(self, fused=False)


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
        self,
        descriptions: Sequence[str],
        vectors: np.ndarray,
        lexical: Sequence[LexicalVector],
        embedder: TaskEmbedder,
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
                    embedding=TaskEmbedding(
                        embedder.name,
                        embedder.version,
                        vectors[number],
                        lexical[number],
                        description=vectors[number],  # a card of a description only
                    ),
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

    def insert(
        self, descriptions: Sequence[str], vectors: np.ndarray, lexical: Sequence[LexicalVector]
    ) -> None:
        self.database.publish(descriptions, vectors, lexical, self.service.embedder)
        rebuild_s = _timed(self.service.rebuild)
        kind = self.service.index.kind(BASE_MODEL)
        print(f"{kind} index of {len(descriptions):,} experts built from SQL in {rebuild_s:.1f} s")

    def search(self, query: Query, k: int) -> list[int]:
        words, inputs = query
        request = SearchRequest(query=words, examples=list(inputs), base_model=BASE_MODEL, k=k)
        with self.database.sessions() as session:
            results = self.service.search(session, request).results
        return [int(result.id.rsplit("/e", 1)[1]) for result in results]

    def dense_only(self) -> None:
        """The registry's search always fuses; the in-process run measures the baseline."""


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        p50, p99 = np.percentile(np.asarray(seconds) * 1000, [50, 99])
        return cls(float(p50), float(p99))


@dataclass(frozen=True)
class KindResult:
    """One kind of query at one size: fused exact and HNSW, and the dense-only HNSW baseline."""

    exact: Latency
    ann: Latency
    recall_at_10: float  # fused HNSW top-10 against fused exact top-10
    dense_only: Latency | None


@dataclass(frozen=True)
class SizeResult:
    n: int
    default_kind: str
    exact_insert_s: float
    ann_insert_s: float
    kinds: dict[str, KindResult]  # "inputs", "words"
    cpu_pressure: float | None


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
    experts: tuple[Sequence[str], np.ndarray, Sequence[LexicalVector]],
    queries: dict[str, Sequence[Query]],
) -> SizeResult:
    """Latency of exact and HNSW backends on the same queries, and HNSW's recall@10 vs exact."""
    n = len(experts[0])
    exact_backend = make_backend(embedder, IndexConfig(ann_threshold=n + 1))
    ann_backend = make_backend(embedder, IndexConfig(ann_threshold=1))
    exact_insert_s = _timed(lambda: exact_backend.insert(*experts))
    ann_insert_s = _timed(lambda: ann_backend.insert(*experts))
    baseline = ann_backend.dense_only()
    pressure = CpuPressure.start()
    kinds = {}
    for kind, kind_queries in queries.items():
        for query in kind_queries[:5]:  # warm caches and lazy paths before timing
            exact_backend.search(query, K)
            ann_backend.search(query, K)
        exact_s, ann_s, dense_s, overlaps = [], [], [], []
        for query in kind_queries:  # interleaved, so load from other processes hits all alike
            started = time.perf_counter()
            truth = exact_backend.search(query, K)
            exact_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            found = ann_backend.search(query, K)
            ann_s.append(time.perf_counter() - started)
            overlaps.append(len(set(truth) & set(found)) / len(truth))
            if baseline is not None:
                dense_s.append(_timed(lambda q=query: baseline.search(q, K)))
        kinds[kind] = KindResult(
            exact=Latency.of(exact_s),
            ann=Latency.of(ann_s),
            recall_at_10=float(np.mean(overlaps)),
            dense_only=Latency.of(dense_s) if dense_s else None,
        )
    default_kind = "hnsw" if n >= IndexConfig().ann_threshold else "exact"
    return SizeResult(
        n=n,
        default_kind=default_kind,
        exact_insert_s=exact_insert_s,
        ann_insert_s=ann_insert_s,
        kinds=kinds,
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
    for kind, figures in result.kinds.items():
        print(f"  {kind} queries (fused: dense, description, lexical):")
        timed = [("exact", figures.exact), ("hnsw", figures.ann)]
        if figures.dense_only is not None:
            timed.append(("hnsw, dense only (baseline)", figures.dense_only))
        for name, latency in timed:
            print(f"    {name:27} p50 {latency.p50_ms:6.2f} ms  p99 {latency.p99_ms:6.2f} ms")
        ratio = (
            ""
            if figures.dense_only is None
            else f"fused/dense-only p50 x{figures.ann.p50_ms / figures.dense_only.p50_ms:.2f}; "
        )
        print(f"    {ratio}recall@10 of fused hnsw vs fused exact {figures.recall_at_10:.4f}")
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
    started = time.perf_counter()
    lexical = lexical_vectors(embedder, [(text, ()) for text in descriptions])
    print(f"hashed {len(descriptions):,} descriptions in {time.perf_counter() - started:.1f} s")
    queries: dict[str, Sequence[Query]] = {
        "inputs": [(None, group) for group in generate_input_queries(query_count)],
        "words": [(text, ()) for text in generate_queries(query_count)],
    }
    embed_latency = {
        kind: Latency.of([_timed(lambda q=q: embedder.embed_query(*q)) for q in kind_queries])
        for kind, kind_queries in queries.items()
    }
    for kind, latency in embed_latency.items():
        print(
            f"{kind} query embedding alone: p50 {latency.p50_ms:.2f} ms  p99 {latency.p99_ms:.2f} ms"
        )
    results = []
    for n in sizes:
        experts = (descriptions[:n], vectors[:n], lexical[:n])
        results.append(measure_size(make_backend, embedder, experts, queries))
        report(results[-1])
    largest = results[-1]
    pressure = largest.cpu_pressure
    summary: dict[str, object] = {"n": largest.n}
    for kind, figures in largest.kinds.items():
        prefix = "" if kind == "inputs" else f"{kind}_"
        summary |= {
            f"{prefix}p50_ms": round(figures.ann.p50_ms, 3),
            f"{prefix}p99_ms": round(figures.ann.p99_ms, 3),
            f"{prefix}recall_at_10": round(figures.recall_at_10, 4),
            f"{prefix}exact_p50_ms": round(figures.exact.p50_ms, 3),
            f"{prefix}dense_only_p50_ms": (
                None if figures.dense_only is None else round(figures.dense_only.p50_ms, 3)
            ),
            f"{prefix}embed_p50_ms": round(embed_latency[kind].p50_ms, 3),
        }
    summary |= {
        "index": "hnsw",
        "default_index_at_n": largest.default_kind,
        "cpu_pressure": None if pressure is None else round(pressure, 3),
        "queries": query_count,
        "backend": backend_name,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
