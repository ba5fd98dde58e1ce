"""License, training data sets and base model variant as search filters, kept in the index as
facet tags.

The index filters on a PEFT type and tags (`retrieval.shard`); a license, data set or variant is
one more tag of the expert there, spelled `license=mit`, `dataset=squad` or `variant=nf4`. No user tag can be mistaken for
one: tags hold letters, digits and - _ . : only. Data set ids match whatever their case.
"""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from registry.db.models import Revision, RevisionDataset


def license_facet(license: str) -> str:
    return f"license={license}"


def dataset_facet(dataset: str) -> str:
    return f"dataset={dataset.lower()}"


def variant_facet(variant: str) -> str:
    return f"variant={variant}"


def required_facets(license: str | None, dataset: str | None, variant: str | None) -> list[str]:
    """The facet tags a search for `license`, `dataset` and/or `variant` requires."""
    wanted = ((license_facet, license), (dataset_facet, dataset), (variant_facet, variant))
    return [facet(value) for facet, value in wanted if value is not None]


def facets_of(session: Session, revision_ids: Select[tuple[int]]) -> dict[int, set[str]]:
    """The facet tags of each revision among `revision_ids` (those with any)."""
    facets: dict[int, set[str]] = {}
    stated = select(Revision.id, Revision.license, Revision.base_model_variant).where(
        Revision.id.in_(revision_ids)
    )
    for revision_id, license, variant in session.execute(stated):
        facets.setdefault(revision_id, set()).update(required_facets(license, None, variant))
    trained = select(RevisionDataset.revision_id, RevisionDataset.dataset).where(
        RevisionDataset.revision_id.in_(revision_ids)
    )
    for revision_id, dataset in session.execute(trained):
        facets.setdefault(revision_id, set()).add(dataset_facet(dataset))
    return facets
