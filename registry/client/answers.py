"""Requests and answers of the hub's JSON API, checked against the wire types on this side.

A request body is validated before it is sent, so a bad argument fails with the error the hub
would answer; an answer that does not parse means the hub speaks another version of the API.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from registry.client.errors import BadRequestError, HubError
from registry.client.settings import API_PREFIX
from registry.errors import describe_validation_errors

API = API_PREFIX  # the client's calls write their paths f"{API}/..."
Model = TypeVar("Model", bound=BaseModel)


def parsed(model: type[Model], response: httpx.Response) -> Model:
    """The answer as `model`; a HubError if the server speaks another version of the API."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise HubError(
            f"{response.request.url}: unexpected answer from the hub (another API "
            f"version?): {describe_validation_errors(exc.errors(), what='answer')}"
        ) from exc


def request_body(model: type[Model], what: str, **fields: Any) -> Model:
    """`model(**fields)`, or the BadRequestError the server would answer, raised before sending."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise BadRequestError(describe_validation_errors(exc.errors(), what=what)) from exc
