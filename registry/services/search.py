"""Search experts by task: embed the query, ask this process's index, hydrate the hits from SQL.

Each API process holds its own index, a cache of the SQL rows (`index_log` explains the version
counter). Before every search it reads the counter, one primary-key SELECT, and pulls the changes
it has not seen, so a change committed through any process is found by the next search on every
process. An expert is searchable while it is live, its latest revision names a base model and has
an embedding from the running embedder; experts embedded by another model wait for `reembed`.
The index ranks the dense stage's best hits again by a fused score of dense, description and
lexical parts (`retrieval.fusion`); each result says what its score is made of.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

from sqlalchemy import ColumnElement, select, tuple_
from sqlalchemy.orm import Session, joinedload, sessionmaker

from registry.db.index_log import changed_since, current_version
from registry.db.models import Expert, Revision, RevisionEmbedding, RevisionTag, User
from registry.errors import CorruptRecordError, listed_names
from registry.ids import ExpertId
from registry.services.answers import revision_detail
from registry.services.catalog import live_experts_with_latest
from registry.services.facets import facets_of, required_facets
from registry.services.vectors import (
    decode_description,
    decode_lexical,
    decode_vector,
    is_current,
    second_stage,
)
from registry.wire.search import (
    EmbedderInfo,
    ScoreParts,
    ScoreWeights,
    ScoringInfo,
    SearchRequest,
    SearchResponse,
    SearchResult,
)
from retrieval.embedder import TaskEmbedder
from retrieval.errors import UnknownBaseModelError
from retrieval.fusion import rerank_depth
from retrieval.index import ExpertIndex, ExpertRecord
from retrieval.lexical import LEXICAL_VERSION
from retrieval.shard import Hit, IndexConfig
from retrieval.sync import ChangeSet, IndexSync

logger = logging.getLogger(__name__)


class ExpertSearch:
    """One process's search service: the embedder, the index and what keeps the index current.

    Cheap to construct: nothing is read until `rebuild` or the first search, and the embedding
    model loads on the first query (or upload) that needs it. Thread-safe.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        embedder: TaskEmbedder,
        config: IndexConfig | None = None,
    ) -> None:
        self._sessions = sessions
        self._embedder = embedder
        self._sync = IndexSync(
            ExpertIndex(embedder.dim, config),
            self._load_changes,
            self._load_all,
        )

    @property
    def embedder(self) -> TaskEmbedder:
        return self._embedder

    @property
    def index(self) -> ExpertIndex:
        """The index searches read; only this object's refreshes write it."""
        return self._sync.index

    def rebuild(self) -> None:
        """Load the index from SQL (at start, so the first search does not pay for it)."""
        self._sync.reload()

    def search(self, session: Session, request: SearchRequest) -> SearchResponse:
        """The request's best experts, each with its latest revision, best first.

        Raises UnknownBaseModelError when no searchable expert has the base model, RetrievalError
        for a query the embedder refuses, InvalidRequestError for a malformed `exclude` id.
        """
        excluded = _expert_keys(session, [ExpertId.parse(text) for text in request.exclude])
        version = current_version(session)
        # End the read transaction so its pooled connection goes back before a refresh checks out
        # its own and the query is embedded: a search never holds two connections, so a burst of
        # searches cannot exhaust the pool waiting on itself.
        session.rollback()
        self._sync.refresh_if_stale(version)
        index = self._sync.index
        _check_base_model(index, request.base_model)
        stage = second_stage(request.query, request.examples)
        hits = index.search(
            self._embedder.embed_query(request.query, request.examples),
            request.base_model,
            request.k,
            peft_type=request.peft_type,
            tags=[
                *request.tags,
                *required_facets(request.license, request.dataset, request.base_model_variant),
            ],
            exclude=excluded,
            second_stage=stage,
        )
        return SearchResponse(
            results=_hydrated(session, hits),
            embedder=EmbedderInfo(
                name=self._embedder.name, version=self._embedder.version, dim=self._embedder.dim
            ),
            scoring=ScoringInfo(
                weights=ScoreWeights.model_validate(stage.weights, from_attributes=True),
                lexical=LEXICAL_VERSION,
                rerank_depth=rerank_depth(request.k),
            ),
        )

    def _load_all(self) -> tuple[int, list[ExpertRecord]]:
        with self._sessions() as session:
            version = current_version(session)  # before the rows: see IndexSync
            return version, self._records(session)

    def _load_changes(self, since: int) -> ChangeSet:
        with self._sessions() as session:
            version = current_version(session)
            changed = set(session.scalars(changed_since(since)))
            upserts = self._records(session, Expert.id.in_(changed_since(since)))
            deletes = changed - {record.expert_id for record in upserts}
            return ChangeSet(version=version, upserts=upserts, deletes=sorted(deletes))

    def _records(
        self, session: Session, condition: ColumnElement[bool] | None = None
    ) -> list[ExpertRecord]:
        """The searchable experts (those matching `condition`) as the index keeps them."""
        searchable = (
            select(Expert.id, Revision.id, Revision.base_model, Revision.peft_type)
            .join(Expert.latest)
            .join(Revision.embedding)
            .where(
                Expert.deleted_at.is_(None),
                Revision.base_model.is_not(None),
                is_current(self._embedder),
            )
        )
        if condition is not None:
            searchable = searchable.where(condition)
        revision_ids = searchable.with_only_columns(Revision.id)
        tags: dict[int, set[str]] = facets_of(session, revision_ids)
        tag_rows = select(RevisionTag.revision_id, RevisionTag.tag).where(
            RevisionTag.revision_id.in_(revision_ids)
        )
        for revision_id, tag in session.execute(tag_rows):
            tags.setdefault(revision_id, set()).add(tag)
        rows = session.execute(
            searchable.add_columns(
                RevisionEmbedding.vector,
                RevisionEmbedding.lexical,
                RevisionEmbedding.lexical_version,
                RevisionEmbedding.description_vector,
            )
        )
        dim = self._embedder.dim
        return [
            ExpertRecord(
                expert_id,
                decode_vector(vector),
                base_model,
                peft_type,
                frozenset(tags.get(revision_id, ())),
                decode_lexical(lexical, lexical_version),
                decode_description(description, dim),
            )
            for (
                expert_id,
                revision_id,
                base_model,
                peft_type,
                vector,
                lexical,
                lexical_version,
                description,
            ) in rows
        ]


def _check_base_model(index: ExpertIndex, base_model: str) -> None:
    known = sorted(index.base_models())
    if base_model in known:
        return
    raise UnknownBaseModelError(
        f"no experts for base model {base_model!r}; known: {listed_names(known)}"
    )


def _expert_keys(session: Session, expert_ids: Sequence[ExpertId]) -> Collection[int]:
    """The primary keys of the live experts among `expert_ids` (unknown ones are ignored)."""
    if not expert_ids:
        return ()
    pairs = [(expert_id.owner, expert_id.name) for expert_id in expert_ids]
    return set(
        session.scalars(
            select(Expert.id)
            .join(Expert.owner)
            .where(Expert.deleted_at.is_(None), tuple_(User.name, Expert.name).in_(pairs))
        )
    )


def _hydrated(session: Session, hits: Sequence[Hit]) -> list[SearchResult]:
    """The hits with their latest revisions, in one query; experts deleted meanwhile drop out,
    and so does a hit whose row cannot be answered: one bad row never fails a whole search."""
    if not hits:
        return []
    rows = session.execute(
        live_experts_with_latest()
        .where(Expert.id.in_([hit.expert_id for hit in hits]))
        .options(joinedload(Revision.tag_rows))
    ).unique()
    latest = {expert.id: (expert, revision) for expert, revision in rows}
    results: list[SearchResult] = []
    for hit in hits:
        if hit.expert_id not in latest:
            continue
        expert, revision = latest[hit.expert_id]
        try:
            detail = revision_detail(revision)
        except CorruptRecordError as exc:
            logger.warning("search leaves out expert %d: %s", hit.expert_id, exc)
            continue
        results.append(
            SearchResult(
                id=f"{expert.owner.name}/{expert.name}",
                score=hit.score,
                score_parts=ScoreParts(
                    dense=hit.dense, description=hit.description, lexical=hit.lexical
                ),
                rank=len(results) + 1,
                revision=detail,
            )
        )
    return results
