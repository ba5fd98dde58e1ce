"""List, show and delete experts."""

from typing import Annotated

from fastapi import APIRouter, Query, status

from registry.api.deps import ExpertIdDep, SessionDep, WriterDep
from registry.services import catalog
from registry.services.answers import expert_detail, expert_summary
from registry.wire.common import ErrorBody
from registry.wire.experts import ExpertDetail, ExpertPage

router = APIRouter(prefix="/experts", tags=["experts"])
MAX_PAGE = 100


@router.get("")
def list_experts(
    session: SessionDep,
    owner: Annotated[str | None, Query(max_length=96)] = None,
    base_model: Annotated[str | None, Query(max_length=512)] = None,
    peft_type: Annotated[str | None, Query(max_length=32, examples=["LORA", "IA3"])] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> ExpertPage:
    """Live experts, oldest first; filters apply to each expert's latest revision."""
    filters = catalog.ExpertFilter(owner=owner, base_model=base_model, peft_type=peft_type, tag=tag)
    rows, total = catalog.list_experts(session, filters, limit=limit, offset=offset)
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
