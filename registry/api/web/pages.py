"""The pages: home (search), the expert list, an expert, one revision.

Each route reads its query the way the API does and calls the same service functions
(`catalog`, the search service); templates get the API's own schemas, so a page shows exactly
what `GET /api/v1/...` answers. Reading needs no JavaScript: forms are plain GET forms.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from math import ceil
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.orm import Session

from registry.api.deps import ExpertIdDep, SearchDep, SessionDep, count_request_of_address
from registry.api.http_errors import error_answer
from registry.api.routes.experts import MAX_PAGE
from registry.api.web.rendering import MAPPED_FAILURES, ExpertGone, HTMLErrorRoute, render
from registry.errors import NotFoundError
from registry.ids import ExpertId
from registry.services import catalog
from registry.services.answers import expert_detail, revision_detail
from registry.wire.common import ListQuery
from registry.wire.experts import ExpertOrder
from registry.wire.limits import BASE_MODEL_LENGTH, ID_PART_LENGTH, TAG_LENGTH
from registry.wire.search import SearchRequest
from retrieval.limits import MAX_K

router = APIRouter(
    route_class=HTMLErrorRoute,
    include_in_schema=False,
    dependencies=[Depends(count_request_of_address)],
)
PER_PAGE = 20
MAX_PAGE_NUMBER = 10**6
SORT_LABELS = {  # the Browse page's sort menu, in the order it lists them
    ExpertOrder.created: "Oldest first",
    ExpertOrder.recent: "Recently updated",
    ExpertOrder.name: "Name",
}


@router.get("/", name="home")
def home(
    request: Request,
    session: SessionDep,
    search: SearchDep,
    query: str = "",
    examples: str = "",
    base_model: str = "",
    peft_type: str = "",
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
) -> Response:
    """The search form; with a query or examples (one per line), the best experts of a base model.

    A search the service refuses (an invalid query, an unknown base model) shows the form again
    with the message and the API's status, so the person can fix it in place.
    """
    example_lines = [line for line in examples.splitlines() if line.strip()]
    results = None
    error = None
    if query.strip() or example_lines:
        try:
            wanted = SearchRequest(
                query=query.strip() or None,
                examples=example_lines,
                base_model=base_model,
                peft_type=peft_type or None,
                k=k,
            )
            results = search.search(session, wanted).results
        except ValidationError as exc:
            error = error_answer(request, RequestValidationError(exc.errors()))
        except MAPPED_FAILURES as exc:
            error = error_answer(request, exc)
    context = {
        "choices": catalog.filter_choices(session),
        "form": {
            "query": query,
            "examples": examples,
            "base_model": base_model,
            "peft_type": peft_type,
            "k": k,
        },
        "max_k": MAX_K,
        "results": results,
        "error": error,
    }
    return render(request, "home.html", context, status=error.status if error else 200)


@router.get("/experts", name="expert_list")
def expert_list(
    request: Request,
    session: SessionDep,
    owner: Annotated[str, Query(max_length=ID_PART_LENGTH)] = "",
    base_model: Annotated[str, Query(max_length=BASE_MODEL_LENGTH)] = "",
    peft_type: Annotated[str, Query(max_length=32)] = "",
    tag: Annotated[str, Query(max_length=TAG_LENGTH)] = "",
    q: ListQuery = "",
    sort: ExpertOrder = ExpertOrder.created,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE_NUMBER)] = 1,
    per_page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = PER_PAGE,
) -> Response:
    """Live experts, searched, filtered and sorted like `GET /api/v1/experts` (oldest first by
    default); empty fields match all."""
    filters = catalog.ExpertFilter(
        owner=owner or None,
        base_model=base_model or None,
        peft_type=peft_type or None,
        tag=tag or None,
        text=q or None,
    )
    rows, total = catalog.list_experts(
        session, filters, limit=per_page, offset=(page - 1) * per_page, order=sort
    )
    context = {
        "choices": catalog.filter_choices(session),
        "filters": filters,
        "sort": sort,
        "orders": SORT_LABELS,
        "revisions": [revision_detail(latest) for _, latest in rows],
        "total": total,
        "page": page,
        "pages": max(1, ceil(total / per_page)),
        "per_page": per_page,
        "default_per_page": PER_PAGE,
    }
    return render(request, "experts.html", context)


@router.get("/experts/{owner}/{name}", name="expert_page")
def expert_page(request: Request, session: SessionDep, expert_id: ExpertIdDep) -> Response:
    """The expert's card (from its latest revision), every revision, and how to use it."""
    with _explaining_deletion(session, expert_id):
        expert, latest = catalog.get_expert(session, expert_id)
    context = {
        "expert": expert_detail(expert, latest),
        "revision": revision_detail(latest),
        "hub_url": _hub_url(request),
    }
    return render(request, "expert.html", context)


@router.get("/experts/{owner}/{name}/revisions/{revision}", name="revision_page")
def revision_page(
    request: Request, session: SessionDep, expert_id: ExpertIdDep, revision: str
) -> Response:
    """One revision (a number or `latest`) with everything recorded about it."""
    with _explaining_deletion(session, expert_id):
        row = catalog.get_revision(session, expert_id, revision)
    context = {
        "revision": revision_detail(row),
        "revision_count": row.expert.latest_revision,
        # a name re-created after deletion numbers on from the old expert's revisions
        "first_revision": row.expert.revisions_before + 1,
        "hub_url": _hub_url(request),
    }
    return render(request, "revision.html", context)


@contextmanager
def _explaining_deletion(session: Session, expert_id: ExpertId) -> Iterator[None]:
    """Turn "not found" into "deleted" (410) when the expert existed: a link may outlive it."""
    try:
        yield
    except NotFoundError:
        deleted_at = catalog.deletion_time(session, expert_id)
        if deleted_at is None:
            raise
        raise ExpertGone(
            f"{expert_id} was deleted on {deleted_at:%Y-%m-%d at %H:%M} UTC; "
            "its revisions are no longer served"
        ) from None


def _hub_url(request: Request) -> str:
    """This hub's address as the browser reached it, for the copyable client snippets."""
    return str(request.base_url).rstrip("/")
