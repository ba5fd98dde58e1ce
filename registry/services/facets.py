"""License and training data sets as search filters, kept in the index as facet tags.

The index filters on a PEFT type and tags (`retrieval.shard`); a license or data set is one more
tag of the expert there, spelled `license=mit` or `dataset=squad`. No user tag can be mistaken for
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


def required_facets(license: str | None, dataset: str | None) -> list[str]:
    """The facet tags a search for `license` and/or `dataset` requires."""
    return [
        *([] if license is None else [license_facet(license)]),
        *([] if dataset is None else [dataset_facet(dataset)]),
    ]


def facets_of(session: Session, revision_ids: Select[tuple[int]]) -> dict[int, set[str]]:
    """The facet tags of each revision among `revision_ids` (those with any)."""
    facets: dict[int, set[str]] = {}
    licensed = select(Revision.id, Revision.license).where(
        Revision.id.in_(revision_ids), Revision.license.is_not(None)
    )
    for revision_id, license in session.execute(licensed):
        facets.setdefault(revision_id, set()).add(license_facet(license))
    trained = select(RevisionDataset.revision_id, RevisionDataset.dataset).where(
        RevisionDataset.revision_id.in_(revision_ids)
    )
    for revision_id, dataset in session.execute(trained):
        facets.setdefault(revision_id, set()).add(dataset_facet(dataset))
    return facets
