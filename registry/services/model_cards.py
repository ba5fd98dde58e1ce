"""The adapter folder's README.md (its model card): kept as text, with the license and data sets
its YAML front matter declares, as on the Hugging Face Hub.

The card is a stranger's text: it must be UTF-8 without control characters (PostgreSQL refuses
NUL) and is never rendered as HTML (the web page escapes it). A front matter that is not YAML, or
whose license or data sets are not ids, is not a reason to refuse the adapter: those values are
left out and the upload's answer says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from registry.errors import InvalidRequestError, describe_validation_errors
from registry.wire.common import DatasetId, License, has_control_characters
from registry.wire.experts import MODEL_CARD_PART
from registry.wire.limits import MAX_DATASETS

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*$\r?\n?", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class ModelCard:
    """The card's text and what its front matter declares (None / empty where it does not)."""

    text: str
    license: str | None = None
    datasets: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _FrontMatter(BaseModel):
    """The keys of a Hugging Face model card's metadata that the hub indexes; others are kept in
    the text only."""

    model_config = ConfigDict(extra="ignore")

    license: License | None = None
    datasets: list[DatasetId] = []

    @field_validator("datasets", mode="before")
    @classmethod
    def _one_or_a_few(cls, value: Any) -> Any:
        """`datasets: squad` is as common as a list of one; a long list is refused before its
        items are checked (YAML aliases make long lists out of short text)."""
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and len(value) > MAX_DATASETS:
            raise ValueError(f"at most {MAX_DATASETS} data sets, got {len(value)}")
        return value

    @field_validator("datasets")
    @classmethod
    def _unique(cls, datasets: list[str]) -> list[str]:
        return sorted(set(datasets))


def read_model_card(path: Path | None) -> ModelCard | None:
    """The card of the upload's README.md part; None without one. InvalidRequestError when it is
    not UTF-8 text."""
    if path is None:
        return None
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"{MODEL_CARD_PART} is not UTF-8 text: {exc}") from exc
    if has_control_characters(text):
        raise InvalidRequestError(
            f"{MODEL_CARD_PART} holds control characters (NUL and the like); save it as plain text"
        )
    return _with_front_matter(text)


def split_front_matter(text: str) -> tuple[str | None, str]:
    """(the YAML front matter between the leading `---` lines, or None; the Markdown after it)."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return None, text
    return match.group(1), text[match.end() :]


def _with_front_matter(text: str) -> ModelCard:
    front_matter, _ = split_front_matter(text)
    if front_matter is None:
        return ModelCard(text)
    try:
        document = yaml.safe_load(front_matter)
    except yaml.YAMLError as exc:
        return ModelCard(text, warnings=[f"the {MODEL_CARD_PART} front matter is not YAML ({exc})"])
    if not isinstance(document, dict):
        return ModelCard(text)
    try:
        declared = _FrontMatter.model_validate(document)
    except ValidationError as exc:
        said = describe_validation_errors(exc.errors(), what=f"{MODEL_CARD_PART} front matter")
        return ModelCard(text, warnings=[f"{said}; its license and data sets were left out"])
    return ModelCard(text, license=declared.license, datasets=declared.datasets)
