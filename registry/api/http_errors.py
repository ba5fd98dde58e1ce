"""The one place where failure families become HTTP statuses.

Every API error answer is JSON `{"detail": "<message for a person>"}`; the web pages render the
same `ErrorAnswer` as HTML. Handlers are looked up along the exception's class hierarchy, so a
subclass (BlobNotFoundError) can answer differently from its parent (StorageError).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from compeft_core.errors import CompeftError
from registry.errors import (
    AuthenticationError,
    ConflictError,
    CorruptRecordError,
    InvalidMetadataError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RangeNotSatisfiableError,
    TooManyRequestsError,
    describe_validation_errors,
)
from retrieval.errors import RetrievalError, UnknownBaseModelError
from storage import BlobNotFoundError, StorageError

logger = logging.getLogger(__name__)

STATUS_BY_FAMILY: dict[type[Exception], int] = {
    InvalidRequestError: 400,
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    NotFoundError: 404,
    BlobNotFoundError: 404,
    UnknownBaseModelError: 404,
    ConflictError: 409,
    PayloadTooLargeError: 413,
    RangeNotSatisfiableError: 416,
    TooManyRequestsError: 429,
    InvalidMetadataError: 422,
    RequestValidationError: 422,
    CompeftError: 422,
    RetrievalError: 422,
    DataError: 400,
    CorruptRecordError: 500,
    StorageError: 503,
    OperationalError: 503,
    PoolTimeoutError: 503,
}


def _message(exc: Exception) -> str:
    """The message for the client; storage and database internals (paths, hosts) stay in logs."""
    if isinstance(exc, RequestValidationError):
        return describe_validation_errors(exc.errors(), what="invalid request")
    if isinstance(exc, OperationalError):
        return "database temporarily unavailable; retry later"
    if isinstance(exc, PoolTimeoutError):
        return "server busy: no database connection free; retry later"
    if isinstance(exc, DataError):  # from a value of the request that slipped past validation
        return "the request holds a value the database cannot compare or store (NUL character?)"
    if isinstance(exc, BlobNotFoundError):
        return "the blob is missing from storage; an operator can run `compeft-hub fsck`"
    if isinstance(exc, StorageError):
        return "blob storage temporarily unavailable; retry later"
    return str(exc)


def _extra_headers(exc: Exception) -> dict[str, str]:
    if isinstance(exc, AuthenticationError):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, RangeNotSatisfiableError):
        return {"Content-Range": f"bytes */{exc.size}"}
    if isinstance(exc, TooManyRequestsError):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, StorageError | OperationalError | PoolTimeoutError) and not isinstance(
        exc, BlobNotFoundError
    ):
        return {"Retry-After": "5"}
    return {}


@dataclass(frozen=True)
class ErrorAnswer:
    """What a client is told about a failure, whatever the format (JSON here, HTML in the web UI)."""

    status: int
    detail: str
    headers: dict[str, str]


def error_answer(request: Request, exc: Exception) -> ErrorAnswer:
    """The answer to `exc`, of a family in STATUS_BY_FAMILY; server-side failures are logged."""
    status = next(STATUS_BY_FAMILY[cls] for cls in type(exc).__mro__ if cls in STATUS_BY_FAMILY)
    if status >= 500 or isinstance(exc, StorageError):
        logger.warning("%s %s -> %d: %r", request.method, request.url.path, status, exc)
    return ErrorAnswer(status, _message(exc), _extra_headers(exc))


async def _answer(request: Request, exc: Exception) -> JSONResponse:
    answer = error_answer(request, exc)
    return JSONResponse(
        {"detail": answer.detail}, status_code=answer.status, headers=answer.headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register `_answer` for every family in STATUS_BY_FAMILY."""
    for family in STATUS_BY_FAMILY:
        app.add_exception_handler(family, _answer)
