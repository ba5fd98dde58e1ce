"""Refuse query parameters a route does not read, so a typo (`?sort_by=name`) answers 422 naming
it instead of an answer that silently ignored it."""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from registry.errors import listed_names


def _declared_names(route: APIRoute) -> list[str]:
    """The query parameters `route` and its dependencies declare, sorted (as the client spells
    them: aliases, not Python names). Read from the route, so the list cannot drift from it."""
    names: set[str] = set()
    pending: list[Dependant] = [route.dependant]
    while pending:
        dependant = pending.pop()
        names.update(param.alias for param in dependant.query_params)
        pending.extend(dependant.dependencies)
    return sorted(names)


def refuse_unknown_query_params(request: Request) -> None:
    """A route dependency: 422 when the query holds a parameter the route does not declare, naming
    it and those the route does, in the message shape of every other invalid request."""
    allowed = _declared_names(request.scope["route"])
    unknown = [repr(name) for name in dict.fromkeys(request.query_params) if name not in allowed]
    if unknown:
        what = "unknown parameter" + ("s" if len(unknown) > 1 else "")
        message = f"{what} {', '.join(unknown)}; allowed: {listed_names(allowed)}"
        raise RequestValidationError(
            [{"loc": ("query",), "msg": message, "type": "extra_forbidden"}]
        )
