"""The registry's failure families; `registry.api.http_errors` maps each to one HTTP status.

Messages are written for the person who made the request: they say what was wrong and, where it
helps, what to do instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class RegistryError(Exception):
    """Base class of the errors the registry raises on purpose."""


class InvalidRequestError(RegistryError):
    """The request is not a well-formed call: bad id, missing or unknown part, unsafe file (400)."""


class InvalidMetadataError(RegistryError):
    """The upload's metadata part is well-formed JSON but breaks a rule (422)."""


class AuthenticationError(RegistryError):
    """No token, or a token the registry does not know (401)."""


class PermissionDeniedError(RegistryError):
    """A known token that may not do this: read-only, or another user's namespace (403)."""


class NotFoundError(RegistryError):
    """No such user, expert, revision or blob, or the expert was deleted (404)."""


class ConflictError(RegistryError):
    """The request raced another write and lost; retrying may succeed (409)."""


class PayloadTooLargeError(RegistryError):
    """The request body or one of its parts exceeds a configured limit (413)."""


class TooManyRequestsError(RegistryError):
    """The token wrote more often than its rate limit allows (429)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RangeNotSatisfiableError(RegistryError):
    """A Range header that does not select bytes of the blob (416)."""

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message)
        self.size = size


class CorruptRecordError(RegistryError):
    """A stored row cannot be answered as the API promises (a non-finite number written before
    uploads refused them); answered 500 with this message, and left out of search results."""


class SchemaOutOfDateError(RegistryError):
    """The database schema is not the one this code expects; raised before the server starts."""


def describe_validation_errors(errors: Iterable[Mapping[str, Any]], *, what: str) -> str:
    """One line from pydantic's error list: `what: field.path: message; ...`."""
    problems = "; ".join(
        f"{'.'.join(map(str, error['loc'])) or what}: {error['msg']}" for error in errors
    )
    return f"{what}: {problems}"


LISTED_NAMES = 20


def listed_names(names: Sequence[str]) -> str:
    """The first LISTED_NAMES of `names` for a message, `a, b and 3 more`; "none" when empty, so
    a message naming the choices stays one readable line however many there are."""
    shown = ", ".join(names[:LISTED_NAMES]) or "none"
    hidden = len(names) - LISTED_NAMES
    return f"{shown} and {hidden} more" if hidden > 0 else shown
