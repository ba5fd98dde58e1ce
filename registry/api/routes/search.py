"""Find experts by task."""

from fastapi import APIRouter

from registry.api.deps import SearchDep, SessionDep
from registry.services import catalog
from registry.wire.common import ErrorBody
from registry.wire.search import BaseModelList, SearchRequest, SearchResponse

router = APIRouter(tags=["search"])


@router.post(
    "/search",
    responses={code: {"model": ErrorBody} for code in (400, 404, 422, 503)},
)
def search_experts(body: SearchRequest, session: SessionDep, search: SearchDep) -> SearchResponse:
    """The k experts of a base model whose task is closest to the query (text and/or example
    inputs), best first, with their latest revision. 404 when no expert has that base model."""
    return search.search(session, body)


@router.get("/base-models")
def list_base_models(session: SessionDep) -> BaseModelList:
    """The base models the hub has experts of, to pick one to search (or to hear there is one)."""
    return BaseModelList(base_models=catalog.filter_choices(session).base_models)
