"""Which scoring finds the right expert on the hard real-task set (`bench/retrieval_set.py`).

Every task of the set is one expert card (description + sample inputs); queries are five unseen
inputs of a task, or the words a person would type (`bench/retrieval_word_queries.py`). A method
scores every card for every query (exact search: this compares scoring, not index structures):
- `dense`: LoraRetriever's recipe, the hub's first stage: one mean-pooled MiniLM vector per card
  and per query, cosine;
- `description`: the query's vector against the embedding of the card's description alone;
- `dense+description`: w x dense + (1 - w) x description, w chosen on the tuning part;
- `tfidf`: scikit-learn's TfidfVectorizer over character n-grams (1-3, within word bounds,
  sublinear tf), fitted on the cards, cosine;
- `hashed`: the same n-grams with sublinear tf through HashingVectorizer, no corpus statistics
  (nothing to refit as experts arrive: what an index can store per expert at upload);
- `dense+tfidf`, `dense+hashed`: w x dense + (1 - w) x lexical, w chosen on the tuning part for
  each query kind (inputs, words);
- `rerank50`: `dense+hashed` over the dense top-50 only (a second stage over the first's hits);
- `hub`: what the hub ships, through its own code: `ExpertIndex` searched with the description
  and lexical vectors the upload path stores (lexical: at most 1,024 terms, float16) and the
  fixed weights of `retrieval.fusion` (dense/description/lexical), chosen on the tuning part.
The fusion weights are chosen on the tuning part; the held-out part is reported with them.

    python -m bench.retrieval_methods          # the whole set, ~2 minutes on 2 cores
    python -m bench.retrieval_methods --quick  # 40 tasks, for tests/test_bench_retrieval.py

The last line is one JSON object: per method and part, top-1/top-3 of input and word queries.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer
from sklearn.preprocessing import normalize

from bench.retrieval import Query
from bench.retrieval_set import PARTS, SetTask, load_set
from bench.retrieval_word_queries import WORD_QUERIES
from registry.services.vectors import lexical_vectors, second_stage
from retrieval.embedder import CardVectors, TaskEmbedder
from retrieval.fusion import RERANK_DEPTH
from retrieval.index import ExpertIndex, ExpertRecord
from retrieval.lexical import LexicalVector

NGRAMS = (1, 3)
WEIGHT_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)
QUICK_TASKS = 40


@dataclass(frozen=True)
class Queries:
    """One kind of query: their texts, their dense vectors and the index of the task each seeks."""

    kind: str  # "inputs" or "words"
    texts: list[str]
    searches: list[Query]  # as a client sends them: words, inputs
    dense: np.ndarray
    owners: np.ndarray
    parts: np.ndarray


@dataclass(frozen=True)
class Accuracy:
    top1: float
    top3: float
    queries: int


@dataclass(frozen=True)
class MethodResult:
    parts: dict[str, Accuracy]  # "tuning" and "heldout"
    weights: str  # a fused method's weights (the dense one first), "" for a single score


@dataclass(frozen=True)
class KindResult:
    methods: dict[str, MethodResult]
    dense_recall: float  # share of queries whose task is in the dense top RERANK_DEPTH


def card_text(task: SetTask) -> str:
    return "\n".join([task.description, *task.card_inputs])


def build_queries(embedder: TaskEmbedder, tasks: Sequence[SetTask]) -> list[Queries]:
    """The set's input queries and word queries, embedded as the hub embeds a search."""
    inputs = [
        (owner, (None, group)) for owner, task in enumerate(tasks) for group in task.queries()
    ]
    words = [
        (owner, (WORD_QUERIES[task.name], ()))
        for owner, task in enumerate(tasks)
        if task.name in WORD_QUERIES
    ]
    return [
        _queries(embedder, kind, found, tasks)
        for kind, found in (("inputs", inputs), ("words", words))
    ]


def _queries(
    embedder: TaskEmbedder,
    kind: str,
    found: list[tuple[int, Query]],
    tasks: Sequence[SetTask],
) -> Queries:
    owners = np.array([owner for owner, _ in found])
    searches = [search for _, search in found]
    return Queries(
        kind,
        texts=[
            "\n".join([*([] if words is None else [words]), *group]) for words, group in searches
        ],
        searches=searches,
        dense=embedder.embed_queries([(words, list(group)) for words, group in searches]),
        owners=owners,
        parts=np.array([tasks[owner].part for owner in owners]),
    )


def tfidf_scores(cards: Sequence[str], queries: Sequence[str]) -> np.ndarray:
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=NGRAMS, sublinear_tf=True)
    card_vectors = vectorizer.fit_transform(cards)
    return (vectorizer.transform(queries) @ card_vectors.T).toarray()


def hashed_scores(cards: Sequence[str], queries: Sequence[str]) -> np.ndarray:
    vectorizer = HashingVectorizer(
        analyzer="char_wb", ngram_range=NGRAMS, alternate_sign=False, norm=None
    )

    def vectors(texts: Sequence[str]) -> csr_matrix:
        counts = vectorizer.transform(texts)
        counts.data = 1.0 + np.log(counts.data)
        return normalize(counts)

    return (vectors(queries) @ vectors(cards).T).toarray()


def hub_ranking(
    cards: CardVectors, lexical: Sequence[LexicalVector], queries: Queries
) -> np.ndarray:
    """Each query's three best cards as the hub's index ranks them (fused second stage)."""
    index = ExpertIndex(cards.tasks.shape[1])
    index.update(
        upserts=[
            ExpertRecord(
                number,
                card,
                "set",
                "LORA",
                lexical=LexicalVector.from_bytes(terms.to_bytes()),
                description=description,
            )
            for number, (card, terms, description) in enumerate(
                zip(cards.tasks, lexical, cards.descriptions, strict=True)
            )
        ]
    )
    return np.array(
        [
            [
                hit.expert_id
                for hit in index.search(vector, "set", 3, second_stage=second_stage(words, group))
            ]
            for vector, (words, group) in zip(queries.dense, queries.searches, strict=True)
        ]
    )


def ranked_accuracy(ranked: np.ndarray, owners: np.ndarray) -> Accuracy:
    """Top-1 and top-3 of rankings: each row holds a query's best card indices, best first."""
    return Accuracy(
        top1=float(np.mean(ranked[:, 0] == owners)),
        top3=float(np.mean((ranked[:, :3] == owners[:, None]).any(axis=1))),
        queries=len(owners),
    )


def accuracy(scores: np.ndarray, owners: np.ndarray) -> Accuracy:
    return ranked_accuracy(np.argsort(-scores, axis=1, kind="stable")[:, :3], owners)


def tuned_weight(dense: np.ndarray, lexical: np.ndarray, queries: Queries) -> float:
    """The dense weight with the best tuning-part top-1 (then top-3); held-out rows unused."""
    tuning = queries.parts == "tuning"

    def merit(weight: float) -> tuple[float, float]:
        fused = weight * dense[tuning] + (1 - weight) * lexical[tuning]
        result = accuracy(fused, queries.owners[tuning])
        return result.top1, result.top3

    return float(max(WEIGHT_GRID, key=merit))


def within_dense_top(scores: np.ndarray, dense: np.ndarray, depth: int) -> np.ndarray:
    """`scores` where the card is among a query's `depth` best by dense score, else -inf."""
    kept = np.full_like(scores, -np.inf)
    top = np.argsort(-dense, axis=1, kind="stable")[:, :depth]
    rows = np.arange(len(scores))[:, None]
    kept[rows, top] = scores[rows, top]
    return kept


def evaluate(embedder: TaskEmbedder, tasks: Sequence[SetTask]) -> dict[str, KindResult]:
    """Every method on every query kind ("inputs", "words"), per part of the set."""
    card_tasks = [(task.description, task.card_inputs) for task in tasks]
    cards = embedder.embed_cards(card_tasks)
    card_lexical = lexical_vectors(embedder, card_tasks)
    texts = [card_text(task) for task in tasks]
    results = {}
    for queries in build_queries(embedder, tasks):
        dense = queries.dense @ cards.tasks.T
        single = {
            "description": queries.dense @ cards.descriptions.T,
            "tfidf": tfidf_scores(texts, queries.texts),
            "hashed": hashed_scores(texts, queries.texts),
        }
        methods: dict[str, tuple[np.ndarray, str]] = {"dense": (dense, "")}
        for name, scores in single.items():
            methods[name] = (scores, "")
            weight = tuned_weight(dense, scores, queries)
            methods[f"dense+{name}"] = (weight * dense + (1 - weight) * scores, f"{weight:g}")
        fused, weight_text = methods["dense+hashed"]
        methods[f"rerank{RERANK_DEPTH}"] = (
            within_dense_top(fused, dense, RERANK_DEPTH),
            weight_text,
        )
        ranked = {
            name: (np.argsort(-scores, axis=1, kind="stable")[:, :3], weights)
            for name, (scores, weights) in methods.items()
        }
        hub = second_stage(*queries.searches[0]).weights
        ranked["hub"] = (
            hub_ranking(cards, card_lexical, queries),
            f"{hub.dense:g}/{hub.description:g}/{hub.lexical:g}",
        )
        results[queries.kind] = KindResult(
            methods={
                name: MethodResult(_per_part(top, queries), weights)
                for name, (top, weights) in ranked.items()
            },
            dense_recall=recall_at(dense, queries.owners, RERANK_DEPTH),
        )
    return results


def recall_at(scores: np.ndarray, owners: np.ndarray, depth: int) -> float:
    top = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    return float(np.mean((top == owners[:, None]).any(axis=1)))


def _per_part(ranked: np.ndarray, queries: Queries) -> dict[str, Accuracy]:
    return {
        part: ranked_accuracy(ranked[queries.parts == part], queries.owners[queries.parts == part])
        for part in PARTS
    }


def quick_subset(tasks: Sequence[SetTask]) -> list[SetTask]:
    """QUICK_TASKS tasks spread over the set (every n-th), word-query tasks among them."""
    step = max(1, len(tasks) // QUICK_TASKS)
    return list(tasks[::step][:QUICK_TASKS])


def report(tasks: Sequence[SetTask], results: dict[str, KindResult]) -> dict[str, float]:
    """Print the table; the summary holds every figure, keyed kind_method_part_topN."""
    counts = {part: sum(task.part == part for task in tasks) for part in PARTS}
    print(f"{len(tasks)} tasks: {counts['tuning']} tuning, {counts['heldout']} held out")
    summary: dict[str, float] = {"tasks": len(tasks)}
    for kind, result in results.items():
        print(f"\n{kind} queries            tuning top-1/top-3   held-out top-1/top-3   weights")
        for name, method in result.methods.items():
            tuning, heldout = method.parts["tuning"], method.parts["heldout"]
            print(
                f"  {name:18} {tuning.top1:6.3f} {tuning.top3:6.3f} ({tuning.queries:3})"
                f"    {heldout.top1:6.3f} {heldout.top3:6.3f} ({heldout.queries:3})"
                f"    {method.weights}"
            )
            for part, figures in method.parts.items():
                summary[f"{kind}_{name}_{part}_top1"] = round(figures.top1, 4)
                summary[f"{kind}_{name}_{part}_top3"] = round(figures.top3, 4)
        print(f"  dense recall@{RERANK_DEPTH}, both parts: {result.dense_recall:.3f}")
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TASKS} tasks only")
    args = parser.parse_args(argv)
    tasks = load_set()
    if args.quick:
        tasks = quick_subset(tasks)
    results = evaluate(TaskEmbedder(), tasks)
    print(json.dumps(report(tasks, results)))


if __name__ == "__main__":
    main()
