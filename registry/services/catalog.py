"""Read and delete experts: listing with filters, lookups by id and revision, soft delete.

Soft-deleted experts are invisible to every read here: they answer NotFoundError exactly as if
the expert never existed. Only `deletion_time` looks at them, so a web page can say why one is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, exists, func, select
from sqlalchemy.orm import Session, contains_eager

from registry.db.index_log import record_changes
from registry.db.models import Expert, Revision, RevisionDataset, RevisionTag, User, utc_now
from registry.errors import InvalidRequestError, NotFoundError
from registry.ids import ExpertId
from registry.services.accounts import Caller, authorize_write
from registry.wire.common import tag_form
from registry.wire.experts import ExpertOrder

LATEST = "latest"
MAX_REVISION_DIGITS = 9


@dataclass(frozen=True)
class ExpertFilter:
    """Listing filters; each one set must match the expert's latest revision (or owner)."""

    owner: str | None = None
    base_model: str | None = None
    peft_type: str | None = None
    tag: str | None = None
    license: str | None = None
    dataset: str | None = None  # matched ignoring capitals
    base_model_variant: str | None = None
    text: str | None = None  # in owner/name, task description or a tag, ignoring capitals


def _mentions(text: str) -> ColumnElement[bool]:
    """The expert's `owner/name`, its latest task description or one of its latest tags holds
    `text`, capitals aside; `%` and `_` in it are plain characters (autoescape)."""
    return (
        (User.name + "/" + Expert.name).icontains(text, autoescape=True)
        | Revision.task_description.icontains(text, autoescape=True)
        | exists().where(
            RevisionTag.revision_id == Revision.id, RevisionTag.tag.icontains(text, autoescape=True)
        )
    )


# Every order ends on Expert.id, so equal keys (same time, same name) page the same way each time.
_ORDER_BY: dict[ExpertOrder, tuple[ColumnElement[object], ...]] = {
    ExpertOrder.created: (Expert.id.asc(),),
    ExpertOrder.recent: (Revision.created_at.desc(), Expert.id.desc()),
    ExpertOrder.name: (func.lower(User.name), func.lower(Expert.name), Expert.id.asc()),
}


def live_experts_with_latest() -> Select[Expert, Revision]:
    """Live experts paired with their latest revision; `expert.owner` is loaded by the same query."""
    return (
        select(Expert, Revision)
        .join(Expert.owner)
        .join(Expert.latest)
        .options(contains_eager(Expert.owner))
        .where(Expert.deleted_at.is_(None))
    )


def list_experts(
    session: Session,
    filters: ExpertFilter,
    *,
    limit: int,
    offset: int,
    order: ExpertOrder = ExpertOrder.created,
) -> tuple[list[tuple[Expert, Revision]], int]:
    """One page of live experts with their latest revision, in `order`, and the total count."""
    query = live_experts_with_latest()
    if filters.owner is not None:
        query = query.where(User.name == filters.owner)
    if filters.base_model is not None:
        query = query.where(Revision.base_model == filters.base_model)
    if filters.peft_type is not None:
        query = query.where(Revision.peft_type == filters.peft_type.upper())
    if filters.tag is not None:
        query = query.where(
            Revision.id.in_(
                select(RevisionTag.revision_id).where(RevisionTag.tag == tag_form(filters.tag))
            )
        )
    if filters.license is not None:
        query = query.where(Revision.license == filters.license.lower())
    if filters.base_model_variant is not None:
        query = query.where(Revision.base_model_variant == filters.base_model_variant.lower())
    if filters.dataset is not None:
        query = query.where(
            Revision.id.in_(
                select(RevisionDataset.revision_id).where(
                    func.lower(RevisionDataset.dataset) == filters.dataset.lower()
                )
            )
        )
    if filters.text is not None:
        query = query.where(_mentions(filters.text))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(query.order_by(*_ORDER_BY[order]).limit(limit).offset(offset))
    return [(expert, latest) for expert, latest in rows], total


def get_expert(session: Session, expert_id: ExpertId) -> tuple[Expert, Revision]:
    """The live expert `owner/name` and its latest revision; NotFoundError otherwise."""
    row = session.execute(_live_named(expert_id)).first()
    if row is None:
        raise NotFoundError(f"no expert {expert_id}")
    expert, latest = row
    return expert, latest


def latest_revision(session: Session, expert_id: ExpertId) -> Revision | None:
    """The latest revision of the live expert `owner/name`; None where there is none (yet)."""
    row = session.execute(_live_named(expert_id)).first()
    return None if row is None else row[1]


def _live_named(expert_id: ExpertId) -> Select[Expert, Revision]:
    return live_experts_with_latest().where(
        User.name == expert_id.owner, Expert.name == expert_id.name
    )


def parse_revision(revision: str) -> int | None:
    """A revision reference: a positive number, or None for `latest`."""
    if revision == LATEST:
        return None
    if not (revision.isascii() and revision.isdigit() and len(revision) <= MAX_REVISION_DIGITS):
        raise InvalidRequestError(
            f"invalid revision {revision!r}: use a revision number (1, 2, ...) or {LATEST!r}"
        )
    if int(revision) < 1:
        raise InvalidRequestError(f"revision numbers start at 1, got {revision!r}")
    return int(revision)


def get_revision(session: Session, expert_id: ExpertId, revision: str) -> Revision:
    """Revision `revision` (a number or `latest`) of a live expert; NotFoundError otherwise."""
    number = parse_revision(revision)
    expert, latest = get_expert(session, expert_id)
    if number is None or number == latest.revision:
        return latest
    row = session.scalar(
        select(Revision).where(Revision.expert_id == expert.id, Revision.revision == number)
    )
    if row is None:
        raise NotFoundError(f"{expert_id} has no revision {number} (latest: {latest.revision})")
    return row


def delete_expert(
    session: Session,
    expert_id: ExpertId,
    *,
    caller: Caller,
) -> None:
    """Soft-delete: rows and blobs stay (revisions are immutable), reads answer 404 from now on."""
    authorize_write(caller, expert_id.owner)
    expert, _ = get_expert(session, expert_id)
    expert.deleted_at = utc_now()
    record_changes(session, [expert.id])
    session.commit()


@dataclass(frozen=True)
class FilterChoices:
    """What the listing filters can match today: the values of live experts' latest revisions."""

    base_models: list[str]
    peft_types: list[str]


def filter_choices(session: Session) -> FilterChoices:
    """The distinct base models and PEFT types in use, sorted, to offer as filter menus."""
    pairs = session.execute(
        live_experts_with_latest()
        .with_only_columns(Revision.base_model, Revision.peft_type)
        .distinct()
    ).all()
    return FilterChoices(
        base_models=sorted({base_model for base_model, _ in pairs if base_model is not None}),
        peft_types=sorted({peft_type for _, peft_type in pairs}),
    )


def deletion_time(session: Session, expert_id: ExpertId) -> datetime | None:
    """When `expert_id` was deleted; None if it never existed or a live expert holds the name now.

    Reads answer a deleted expert with NotFoundError; this lets a page say why it is gone.
    """
    times = session.scalars(
        select(Expert.deleted_at)
        .join(Expert.owner)
        .where(User.name == expert_id.owner, Expert.name == expert_id.name)
    ).all()
    if not times or None in times:
        return None
    return max(time for time in times if time is not None)
