"""What the client raises: one class per failure family, each carrying the server's `detail`.

The families mirror the server's statuses (registry/api/http_errors.py), so `except NotFoundError`
means the same thing on both sides. Client-side checks that stop a request the server would refuse
(a bad expert id, invalid metadata) raise the family the server would have answered with.
"""

from __future__ import annotations

import json

import httpx


class HubError(Exception):
    """Base class. `status_code` and `detail` are set when the server answered."""

    def __init__(
        self, message: str, *, status_code: int | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class BadRequestError(HubError):
    """The request is malformed or breaks a rule (400, 413, 416, 422): fix it, do not retry."""


class AuthError(HubError):
    """No token, or one the hub does not know (401)."""


class ForbiddenError(AuthError):
    """A known token that may not do this: read-only, or another user's namespace (403)."""


class NotFoundError(HubError):
    """No such expert or revision, or it was deleted (404)."""


class ConflictError(HubError):
    """The upload raced another one and lost (409); upload again on the new parent."""


class RateLimitedError(HubError):
    """The token wrote faster than the hub allows (429), and the client did not wait: the hub's
    `retry_after_s` (None when it did not say) was longer than `RetryPolicy.max_rate_limit_wait_s`,
    or the retries ran out. Wait that long, then retry."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        detail: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, detail=detail)
        self.retry_after_s = retry_after_s


class ServerUnavailableError(HubError):
    """The hub could not be reached or answered 5xx, even after the configured retries."""


class ChecksumMismatchError(HubError):
    """A downloaded blob's sha256 is not the one the hub announced, twice in a row."""


class LimitExceededError(HubError):
    """The hub announced or sent more than the client's limits (settings.ClientLimits) allow, or
    more than it announced: refused before the bytes are read or the memory allocated, not
    retried."""


class NotCachedError(HubError):
    """Offline mode, and the revision or its blob is not in the local cache."""


_FAMILY_BY_STATUS: dict[int, type[HubError]] = {
    400: BadRequestError,
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: BadRequestError,
    416: BadRequestError,
    422: BadRequestError,
    429: RateLimitedError,
}


def server_detail(body: bytes) -> str:
    """The `detail` of a JSON error body, else the start of the body (proxies answer HTML)."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or cut short by the read cap; deep nesting
        return body[:300].decode(errors="replace")
    if isinstance(parsed, dict) and isinstance(parsed.get("detail"), str):
        return parsed["detail"]
    return str(parsed)[:300]


def error_for_response(response: httpx.Response, body: bytes) -> HubError:
    """The exception for an error answer whose (start of the) body is `body`; a status we do not
    know is a plain HubError."""
    status = response.status_code
    family = _FAMILY_BY_STATUS.get(status, ServerUnavailableError if status >= 500 else HubError)
    detail = server_detail(body)
    request = response.request
    message = f"{request.method} {request.url} -> {status}: {detail}"
    if family is RateLimitedError:
        retry_after = response.headers.get("Retry-After", "")
        seconds = int(retry_after) if retry_after.isdigit() else None  # an HTTP date: unknown
        suffix = "" if seconds is None else f" (retry after {seconds} s)"
        return RateLimitedError(
            message + suffix, status_code=status, detail=detail, retry_after_s=seconds
        )
    return family(message, status_code=status, detail=detail)
