"""The hub's HTTP connection: httpx with explicit timeouts, retries with backoff, mapped errors.

What is retried (tenacity, exponential backoff with jitter):
- reads and deletes (idempotent): any transport error (connect, timeout, dropped connection) and
  any 5xx;
- uploads: only what proves the request was not processed: a failed connect, and 502/503/504
  (the server's "put, then commit" leaves nothing behind on 503). A 500 or a read timeout after
  an upload was sent is not retried: the revision may exist already;
- any call answered 429 (rate limited), after the `Retry-After` the hub asked for: the limiter
  answers before the request is processed, so a write is safe to send again. A wait longer than
  `RetryPolicy.max_rate_limit_wait_s`, or none given, raises RateLimitedError at once.
When the retries run out, a ServerUnavailableError says so; 4xx answers are never retried. A
refused connection (nothing listens at the address: no hub started, or a wrong port) is not
retried at all: it raises at once with what to do, instead of after seconds of backoff.

What is read (the hub is treated as hostile; the limits are in settings.py): the client asks for
`Accept-Encoding: identity` and refuses an answer encoded anyway, since httpx would inflate a few
compressed bytes to gigabytes inside one read; a JSON answer is read up to `max_answer_bytes` and
an error answer's body up to MAX_ERROR_BODY_BYTES, the rest never. Blob bodies are read by the
caller (transfer.py bounds them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from registry.client.errors import (
    HubError,
    LimitExceededError,
    RateLimitedError,
    ServerUnavailableError,
    error_for_response,
)
from registry.client.settings import MAX_ERROR_BODY_BYTES, ClientLimits

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
_NOT_PROCESSED_STATUSES = (502, 503, 504)
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry: `attempts` in all, waits doubling from `initial_wait_s`
    up to `max_wait_s`, plus up to `initial_wait_s` of random jitter. A 429 waits the hub's
    `Retry-After` instead, when that is at most `max_rate_limit_wait_s`."""

    attempts: int = 5
    initial_wait_s: float = 0.5
    max_wait_s: float = 8.0
    max_rate_limit_wait_s: float = 60.0


DEFAULT_RETRY = RetryPolicy()


def _refused(exc: BaseException | None) -> bool:
    """Whether `exc` comes from a refused connection (httpx keeps the OSError as the cause)."""
    while exc is not None:
        if isinstance(exc, ConnectionRefusedError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _retryable(exc: BaseException, *, idempotent: bool, policy: RetryPolicy) -> bool:
    if isinstance(exc, RateLimitedError):
        wait = exc.retry_after_s
        return wait is not None and wait <= policy.max_rate_limit_wait_s
    if isinstance(exc, ServerUnavailableError):
        return idempotent or exc.status_code in _NOT_PROCESSED_STATUSES
    if isinstance(exc, httpx.TransportError):
        return idempotent or isinstance(exc, _NOT_SENT_ERRORS)
    return False


class HubHttp:
    """One httpx.Client per HubClient (connection reuse), with the token on every request."""

    def __init__(
        self,
        endpoint: str,
        *,
        token: str | None,
        timeout: float | httpx.Timeout,
        retry: RetryPolicy,
        limits: ClientLimits,
    ) -> None:
        headers = {
            "User-Agent": f"compeft-hub/{version('compeft-hub')}",
            "Accept-Encoding": "identity",
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.endpoint = endpoint.rstrip("/")
        self.retry = retry
        self.limits = limits
        self.client = httpx.Client(base_url=self.endpoint, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def retrying(self, *, idempotent: bool) -> Retrying:
        """A tenacity retrier: `http.retrying(idempotent=...)(function, *args)`.

        Each retry calls the function again, so one that resumes from what an earlier attempt
        left behind (a partial download) continues where it stopped.
        """
        policy = self.retry
        backoff = wait_exponential_jitter(
            multiplier=policy.initial_wait_s,
            max=policy.max_wait_s,
            jitter=policy.initial_wait_s,
        )

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, RateLimitedError) and exc.retry_after_s is not None:
                return float(exc.retry_after_s)
            return backoff(state)

        attempts_used = stop_after_attempt(policy.attempts)

        def stop(state: RetryCallState) -> bool:
            refused = state.outcome is not None and _refused(state.outcome.exception())
            return refused or attempts_used(state)

        return Retrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception(
                lambda exc: _retryable(exc, idempotent=idempotent, policy=policy)
            ),
            retry_error_callback=self._gave_up,
            reraise=True,
        )

    def _gave_up(self, state: RetryCallState) -> None:
        """Only retryable errors get here: 429 and 5xx answers, transport errors."""
        assert state.outcome is not None
        exc = state.outcome.exception()
        attempts = state.attempt_number
        if isinstance(exc, RateLimitedError):
            raise RateLimitedError(
                f"{exc} (gave up after {attempts} attempts)",
                status_code=exc.status_code,
                detail=exc.detail,
                retry_after_s=exc.retry_after_s,
            ) from exc
        if isinstance(exc, ServerUnavailableError):
            raise ServerUnavailableError(
                f"{exc} (gave up after {attempts} attempts)",
                status_code=exc.status_code,
                detail=exc.detail,
            ) from exc
        if _refused(exc):
            raise ServerUnavailableError(
                f"nothing answers at {self.endpoint} (connection refused): is the hub running? "
                "Start one with `compeft-hub serve`, or give its URL with --endpoint or "
                "COMPEFT_HUB_ENDPOINT"
            ) from exc
        raise ServerUnavailableError(
            f"cannot reach the hub at {self.endpoint} after {attempts} attempts: "
            f"{type(exc).__name__}: {exc}"
        ) from exc

    def call(self, send: Callable[[], httpx.Response], *, idempotent: bool) -> httpx.Response:
        """Run `send` (a `self.send` call) with retries: its answer, or the mapped HubError."""
        return self.retrying(idempotent=idempotent)(send)

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One JSON call, without retries: the 2xx/3xx answer with its body read, or the HubError.

        The body is read as it arrives and refused once it passes `limits.max_answer_bytes`.
        """
        limit = self.limits.max_answer_bytes
        with self.client.stream(method, path, **kwargs) as response:
            body = read_at_most(checked(response), limit)
        if len(body) > limit:
            raise LimitExceededError(
                f"{method} {response.request.url}: the answer is larger than "
                f"the client's limit of {limit} bytes "
                "(COMPEFT_HUB_MAX_ANSWER_BYTES)"
            )
        return httpx.Response(
            response.status_code, headers=response.headers, content=body, request=response.request
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An idempotent JSON call (GET, DELETE, the search POST)."""
        return self.call(lambda: self.send(method, path, **kwargs), idempotent=True)

    @contextmanager
    def stream(self, path: str, *, headers: dict[str, str]) -> Iterator[httpx.Response]:
        """One GET whose body is read by the caller; error answers raise before the block runs."""
        with self.client.stream("GET", path, headers=headers) as response:
            yield checked(response)


def read_at_most(response: httpx.Response, limit: int) -> bytes:
    """The body as sent (never inflated), read until it ends or passes `limit` bytes; then
    `limit + 1` bytes come back, for the caller to tell the two apart, and the rest is not read."""
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > limit:
            break
    return bytes(body[: limit + 1])


def checked(response: httpx.Response) -> httpx.Response:
    """`response`, its body unread, or the HubError it stands for: its error family (from the
    first MAX_ERROR_BODY_BYTES of the body), or a plain HubError for an encoded body."""
    if response.is_error:
        raise error_for_response(response, read_at_most(response, MAX_ERROR_BODY_BYTES))
    encoding = response.headers.get("Content-Encoding", "identity")
    if encoding.lower() != "identity":
        request = response.request
        raise HubError(
            f"{request.method} {request.url}: the hub answered Content-Encoding "
            f"{encoding!r} though the client asked for identity; refused, since a "
            "few compressed bytes can inflate without bound"
        )
    return response
