"""Expert ids `owner/name`, validated by the Hugging Face Hub's rules.

Each part is 1-96 characters of `[A-Za-z0-9_.-]`, does not start or end with `-` or `.`, and
contains neither `--` nor `..`. So a valid part is always safe in a URL path, a file name and a log
line: no separators, no traversal, no control characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.errors import InvalidRequestError
from registry.wire.limits import ID_PART_LENGTH

_PART = re.compile(rf"(?![-.])(?!.*(?:--|\.\.))[\w\-.]{{1,{ID_PART_LENGTH}}}(?<![-.])", re.ASCII)


def validate_id_part(value: str, *, what: str) -> str:
    """Return `value` unchanged when it is a valid owner or name; raise InvalidRequestError."""
    if _PART.fullmatch(value) is None:
        raise InvalidRequestError(
            f"invalid {what} {value!r}: use 1-{ID_PART_LENGTH} letters, digits, '_', '-' or '.', "
            "not starting or ending with '-' or '.', without '--' or '..'"
        )
    return value


@dataclass(frozen=True)
class ExpertId:
    """A validated `owner/name` pair."""

    owner: str
    name: str

    def __post_init__(self) -> None:
        validate_id_part(self.owner, what="owner")
        validate_id_part(self.name, what="expert name")

    @classmethod
    def parse(cls, text: str) -> ExpertId:
        """`owner/name` as a client writes it; InvalidRequestError for anything else."""
        owner, slash, name = text.partition("/")
        if not slash:
            raise InvalidRequestError(f"invalid expert id {text!r}: use owner/name")
        return cls(owner, name)

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}"
