"""`owner/name[@revision]` references, checked before they become URLs or cache paths."""

from __future__ import annotations

from dataclasses import dataclass

from registry.client.answers import API
from registry.client.errors import BadRequestError
from registry.errors import InvalidRequestError
from registry.ids import ExpertId

LATEST = "latest"


@dataclass(frozen=True)
class ExpertRef:
    """An expert and a revision: a number, or `latest` (a movable ref, resolved per call).

    Owner and name follow the hub's id rules and the revision is digits or `latest`, so every part
    is safe as a URL path segment and as a file name in the cache.
    """

    owner: str
    name: str
    revision: str = LATEST

    @classmethod
    def parse(cls, text: str) -> ExpertRef:
        """Parse `owner/name`, `owner/name@3` or `owner/name@latest`; BadRequestError if invalid."""
        expert, _, revision = text.partition("@")
        owner, slash, name = expert.partition("/")
        if not slash:
            raise BadRequestError(f"invalid expert reference {text!r}: use owner/name[@revision]")
        revision = revision or LATEST
        if revision != LATEST and not (revision.isascii() and revision.isdigit()):
            raise BadRequestError(
                f"invalid revision {revision!r} in {text!r}: use a number or {LATEST!r}"
            )
        try:
            ExpertId(owner, name)
        except InvalidRequestError as exc:
            raise BadRequestError(str(exc)) from exc
        return cls(owner, name, revision if revision == LATEST else str(int(revision)))

    @property
    def expert_id(self) -> str:
        return f"{self.owner}/{self.name}"

    def at(self, revision: int) -> ExpertRef:
        """The same expert at a fixed revision number."""
        return ExpertRef(self.owner, self.name, str(revision))

    def __str__(self) -> str:
        return f"{self.expert_id}@{self.revision}"


def expert_path(ref: ExpertRef) -> str:
    """The expert's URL path under the API (the revision is not part of it)."""
    return f"{API}/experts/{ref.owner}/{ref.name}"
