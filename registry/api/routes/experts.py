"""List, show and delete experts."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from registry.api.deps import ExpertIdDep, SessionDep, WriterDep
from registry.api.query_params import refuse_unknown_query_params
from registry.services import catalog
from registry.services.answers import expert_detail, expert_summary
from registry.wire.common import BaseModelVariant, DatasetId, ErrorBody, License, ListQuery
from registry.wire.experts import ExpertDetail, ExpertOrder, ExpertPage

router = APIRouter(prefix="/experts", tags=["experts"])
MAX_PAGE = 100


@router.get("", dependencies=[Depends(refuse_unknown_query_params)])
def list_experts(
    session: SessionDep,
    owner: Annotated[str | None, Query(max_length=96)] = None,
    base_model: Annotated[str | None, Query(max_length=512)] = None,
    peft_type: Annotated[str | None, Query(max_length=32, examples=["LORA", "IA3"])] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    license: Annotated[License | None, Query(description="A license id, e.g. mit.")] = None,
    dataset: Annotated[
        DatasetId | None, Query(description="A training data set's id (any case).")
    ] = None,
    base_model_variant: Annotated[
        BaseModelVariant | None,
        Query(description="full-precision, or the base's quantisation, e.g. nf4."),
    ] = None,
    q: Annotated[
        ListQuery | None,
        Query(
            description="Text in `owner/name`, the task description or a tag, ignoring capitals "
            "(`%` and `_` are plain characters).",
        ),
    ] = None,
    sort: Annotated[
        ExpertOrder,
        Query(
            description="`created`: oldest expert first; `recent`: latest revision newest first; "
            "`name`: owner/name alphabetically."
        ),
    ] = ExpertOrder.created,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> ExpertPage:
    """Live experts, oldest first unless `sort` says otherwise; filters and `q` apply to each
    expert's latest revision. An unknown parameter answers 422, so a typo is not ignored."""
    filters = catalog.ExpertFilter(
        owner=owner,
        base_model=base_model,
        peft_type=peft_type,
        tag=tag,
        license=license,
        dataset=dataset,
        base_model_variant=base_model_variant,
        text=q,
    )
    rows, total = catalog.list_experts(session, filters, limit=limit, offset=offset, order=sort)
    items = [expert_summary(expert, latest) for expert, latest in rows]
    return ExpertPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{owner}/{name}", responses={404: {"model": ErrorBody}})
def get_expert(session: SessionDep, expert_id: ExpertIdDep) -> ExpertDetail:
    """An expert with every revision."""
    return expert_detail(*catalog.get_expert(session, expert_id))


@router.delete(
    "/{owner}/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={code: {"model": ErrorBody} for code in (401, 403, 404, 429)},
)
def delete_expert(session: SessionDep, expert_id: ExpertIdDep, caller: WriterDep) -> None:
    """Soft-delete an expert (owner only): it disappears from every read; the name is free again."""
    catalog.delete_expert(session, expert_id, caller=caller)
