"""Find experts by task: `POST /search` with a JSON body, or the same search as `GET /search?q=`."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from registry.api.deps import SearchDep, SessionDep
from registry.api.query_params import refuse_unknown_query_params
from registry.services import catalog
from registry.wire.common import ErrorBody
from registry.wire.search import BaseModelList, SearchRequest, SearchResponse

router = APIRouter(tags=["search"])
_ANSWERS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 404, 422, 503)
}
# The query parameter of each SearchRequest field whose name differs: short like the web's `?q=`,
# and singular where the parameter repeats (`?tag=a&tag=b`).
_PARAMETER_OF_FIELD = {"query": "q", "examples": "input", "tags": "tag"}


def _described(field: str, **options: Any) -> Any:
    """A Query parameter for SearchRequest's `field`, described as the POST body's field is."""
    return Query(
        alias=_PARAMETER_OF_FIELD.get(field),
        description=SearchRequest.model_fields[field].description,
        **options,
    )


def search_in_query(
    query: Annotated[str | None, _described("query")] = None,
    examples: Annotated[list[str], _described("examples")] = [],  # noqa: B006 (FastAPI copies it)
    base_model: Annotated[str | None, _described("base_model")] = None,
    peft_type: Annotated[str | None, _described("peft_type", examples=["LORA", "IA3"])] = None,
    tags: Annotated[list[str], _described("tags")] = [],  # noqa: B006
    license: Annotated[str | None, _described("license")] = None,
    dataset: Annotated[str | None, _described("dataset")] = None,
    base_model_variant: Annotated[str | None, _described("base_model_variant")] = None,
    k: Annotated[int | None, _described("k")] = None,
    exclude: Annotated[list[str], _described("exclude")] = [],  # noqa: B006
) -> SearchRequest:
    """The SearchRequest the query parameters spell, checked by the model itself (one set of
    rules for GET and POST); a parameter left out takes the body's default, or is missing as a
    body field would be. Its errors name the query parameter, not the body field."""
    given = {
        "query": query,
        "examples": examples,
        "base_model": base_model,
        "peft_type": peft_type,
        "tags": tags,
        "license": license,
        "dataset": dataset,
        "base_model_variant": base_model_variant,
        "k": k,
        "exclude": exclude,
    }
    try:
        return SearchRequest.model_validate(
            {field: value for field, value in given.items() if value not in (None, [])}
        )
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("query", *_parameter_loc(error["loc"]))} for error in exc.errors()]
        ) from exc


def _parameter_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """A body field's error location as the query parameter's (`query` → `q`, `tags.0` → `tag.0`)."""
    if not loc:
        return loc
    field, *rest = loc
    return (_PARAMETER_OF_FIELD.get(str(field), field), *rest)


@router.post("/search", responses=_ANSWERS)
def search_experts(body: SearchRequest, session: SessionDep, search: SearchDep) -> SearchResponse:
    """The k experts of a base model whose task is closest to the query (text and/or example
    inputs), best first, with their latest revision. 404 when no expert has that base model."""
    return search.search(session, body)


@router.get("/search", responses=_ANSWERS, dependencies=[Depends(refuse_unknown_query_params)])
def search_experts_by_query(
    body: Annotated[SearchRequest, Depends(search_in_query)],
    session: SessionDep,
    search: SearchDep,
) -> SearchResponse:
    """`POST /search` with its fields as query parameters (`q` for `query`; `input`, `tag` and
    `exclude` repeat for lists): the same answer, for a link or `curl`."""
    return search.search(session, body)


@router.get("/base-models")
def list_base_models(session: SessionDep) -> BaseModelList:
    """The base models the hub has experts of, to pick one to search (or to hear there is one)."""
    return BaseModelList(base_models=catalog.filter_choices(session).base_models)
