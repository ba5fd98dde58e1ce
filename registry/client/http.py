"""The hub's HTTP connection: httpx with explicit timeouts, retries with backoff, mapped errors.

What is retried (tenacity, exponential backoff with jitter):
- reads and deletes (idempotent): any transport error (connect, timeout, dropped connection) and
  any 5xx;
- uploads: only what proves the request was not processed: a failed connect, and 502/503/504
  (the server's "put, then commit" leaves nothing behind on 503). A 500 or a read timeout after
  an upload was sent is not retried: the revision may exist already.
When the retries run out, a ServerUnavailableError says so; 4xx answers are never retried.
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

from registry.client.errors import ServerUnavailableError, error_for_response

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
_NOT_PROCESSED_STATUSES = (502, 503, 504)
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry: `attempts` in all, waits doubling from `initial_wait_s`
    up to `max_wait_s`, plus up to `initial_wait_s` of random jitter."""

    attempts: int = 5
    initial_wait_s: float = 0.5
    max_wait_s: float = 8.0


DEFAULT_RETRY = RetryPolicy()


def _retryable(exc: BaseException, *, idempotent: bool) -> bool:
    if isinstance(exc, ServerUnavailableError):
        return idempotent or exc.status_code in _NOT_PROCESSED_STATUSES
    if isinstance(exc, httpx.TransportError):
        return idempotent or isinstance(exc, _NOT_SENT_ERRORS)
    return False


class HubHttp:
    """One httpx.Client per HubClient (connection reuse), with the token on every request."""

    def __init__(self, endpoint: str, *, token: str | None, timeout: float | httpx.Timeout,
                 retry: RetryPolicy) -> None:
        headers = {"User-Agent": f"compeft-hub/{version('compeft-hub')}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.endpoint = endpoint.rstrip("/")
        self.retry = retry
        self.client = httpx.Client(base_url=self.endpoint, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def retrying(self, *, idempotent: bool) -> Retrying:
        """A tenacity retrier: `http.retrying(idempotent=...)(function, *args)`.

        Each retry calls the function again, so one that resumes from what an earlier attempt
        left behind (a partial download) continues where it stopped.
        """
        policy = self.retry
        return Retrying(
            stop=stop_after_attempt(policy.attempts),
            wait=wait_exponential_jitter(multiplier=policy.initial_wait_s, max=policy.max_wait_s,
                                         jitter=policy.initial_wait_s),
            retry=retry_if_exception(lambda exc: _retryable(exc, idempotent=idempotent)),
            retry_error_callback=self._gave_up,
            reraise=True,
        )

    def _gave_up(self, state: RetryCallState) -> None:
        """Only retryable errors get here: 5xx answers and transport errors."""
        assert state.outcome is not None
        exc = state.outcome.exception()
        attempts = state.attempt_number
        if isinstance(exc, ServerUnavailableError):
            raise ServerUnavailableError(f"{exc} (gave up after {attempts} attempts)",
                                         status_code=exc.status_code, detail=exc.detail) from exc
        raise ServerUnavailableError(
            f"cannot reach the hub at {self.endpoint} after {attempts} attempts: "
            f"{type(exc).__name__}: {exc}") from exc

    def call(self, send: Callable[[], httpx.Response], *, idempotent: bool) -> httpx.Response:
        """Run `send` with retries; the successful (2xx/3xx) response, or the mapped HubError."""
        return self.retrying(idempotent=idempotent)(lambda: checked(send()))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An idempotent JSON call (GET, DELETE, the search POST)."""
        return self.call(lambda: self.client.request(method, path, **kwargs), idempotent=True)

    @contextmanager
    def stream(self, path: str, *, headers: dict[str, str]) -> Iterator[httpx.Response]:
        """One GET whose body is read by the caller; error answers raise before the block runs."""
        with self.client.stream("GET", path, headers=headers) as response:
            if response.is_error:
                response.read()
                checked(response)
            yield response


def checked(response: httpx.Response) -> httpx.Response:
    """`response` itself, or its HubError family raised when it is an error answer."""
    if response.is_error:
        raise error_for_response(response)
    return response

