"""Field types and small models that several wire types share."""

from __future__ import annotations

import re
from collections.abc import Iterable
from statistics import fmean
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from registry.wire.limits import (
    BASE_MODEL_LENGTH,
    DATASET_LENGTH,
    LICENSE_LENGTH,
    LIST_QUERY_LENGTH,
    MESSAGE_LENGTH,
    TAG_LENGTH,
    VARIANT_LENGTH,
)

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A Hugging Face Hub id: `name` or `owner/name` of letters, digits and - _ . (models, data sets).
HUB_ID_PATTERN = r"[\w.-]+(/[\w.-]+)?"

# Every float the API answers: JSON has no infinity or NaN (pydantic would write `null`, which
# breaks the schema and every client), so a row holding one is refused when converted.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def has_control_characters(text: str) -> bool:
    """NUL or another control character but tab and line breaks (PostgreSQL refuses NUL)."""
    return _CONTROL_CHARACTERS.search(text) is not None


def _without_control_characters(text: str) -> str:
    """Text may hold tabs and newlines, never NUL or other controls."""
    if has_control_characters(text):
        raise ValueError("control characters are not allowed")
    return text


_TAG_CHARACTERS = re.compile(r"[\w\-.:]+")


def tag_form(text: str) -> str:
    """A tag as the hub stores and matches it: lower case, each run of spaces one `-`, so
    `Summarization`, `summarization` and `Question Answering` / `question-answering` are one."""
    return re.sub(" +", "-", text.strip().lower())


def _valid_tag(text: str) -> str:
    tag = tag_form(text)
    if not 1 <= len(tag) <= TAG_LENGTH:
        raise ValueError(f"a tag has 1 to {TAG_LENGTH} characters, got {len(tag)}")
    if not _TAG_CHARACTERS.fullmatch(tag):
        raise ValueError(
            f"tag {tag!r}: a tag may hold letters, digits and the characters - _ . : only "
            "(spaces become -, capitals small letters)"
        )
    return tag


Tag = Annotated[str, AfterValidator(_valid_tag)]
SampleInput = Annotated[
    str,
    StringConstraints(min_length=1, max_length=4000),
    AfterValidator(_without_control_characters),
]
TaskDescription = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=8000),
    AfterValidator(_without_control_characters),
]

RevisionMessage = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MESSAGE_LENGTH),
    AfterValidator(_without_control_characters),
]


def _printable(text: str) -> str:
    if not text.isprintable():
        raise ValueError("only printable characters are allowed (no tabs or line breaks)")
    return text


BaseModelId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=BASE_MODEL_LENGTH),
    AfterValidator(_printable),
]

# The text a listing searches for: SQLite's LIKE stops at a NUL and PostgreSQL refuses one, so
# control characters are refused here and both backends answer alike.
ListQuery = Annotated[
    str,
    StringConstraints(max_length=LIST_QUERY_LENGTH),
    AfterValidator(_without_control_characters),
]


def _hub_id(what: str, pattern: str, explained: str) -> AfterValidator:
    """A validator of ids spelled as on the Hugging Face Hub: `pattern`, else a ValueError
    naming the value and saying, in `explained`, what to give instead."""

    def valid(text: str) -> str:
        if not re.fullmatch(pattern, text):
            raise ValueError(f"{what} {text!r}: {explained}")
        return text

    return AfterValidator(valid)


# Licenses as the Hugging Face Hub names them (`apache-2.0`), matched in lower case.
License = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, max_length=LICENSE_LENGTH),
    _hub_id(
        "license",
        r"[a-z0-9][a-z0-9.+-]*",
        "give a license id as the Hugging Face Hub has them, such as apache-2.0, mit or "
        "cc-by-4.0 (letters, digits and - . + only), or other",
    ),
]
DatasetId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=DATASET_LENGTH),
    _hub_id(
        "dataset",
        HUB_ID_PATTERN,
        "give a data set's hub id, such as cnn_dailymail or abisee/cnn_dailymail (letters, "
        "digits, - _ . and at most one /)",
    ),
]

# The base model as the expert was trained on it: `full-precision`, or how it was quantised
# (method, bits, group size), e.g. `rtn-4bit-g128`, `nf4`, `gptq-4bit`; matched in lower case.
FULL_PRECISION = "full-precision"
BaseModelVariant = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, max_length=VARIANT_LENGTH),
    _hub_id(
        "base model variant",
        r"[a-z0-9]+(-[a-z0-9]+)*",
        f"give {FULL_PRECISION}, or the quantisation as method-bits[-group], e.g. rtn-4bit-g128, "
        "nf4 or gptq-4bit (letters, digits and single dashes)",
    ),
]


class Summary(BaseModel):
    """min / mean / max of a per-tensor quantity."""

    min: FiniteFloat
    mean: FiniteFloat
    max: FiniteFloat

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        """The summary of a non-empty collection of values."""
        ordered = sorted(values)
        return cls(min=ordered[0], mean=fmean(ordered), max=ordered[-1])


class ErrorBody(BaseModel):
    """Every error answer: a message a person can act on."""

    detail: str
