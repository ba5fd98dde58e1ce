"""SQL tables of the registry (SQLAlchemy 2, typed). Alembic migrations mirror this file.

Invariants the rest of the code relies on:
- a revision row is never updated after commit, except `blob_missing`, which only `fsck --repair`
  sets to reflect the blob store;
- `(expert_id, number)` is unique, so two concurrent commits cannot both take the same number;
- user names are unique regardless of case, and so is `name` among an owner's live (not
  soft-deleted) experts (unique indexes on `lower(name)`); a deleted name can be reused in any case;
- every transaction that changes what search can find (an upload, a delete, a re-embedding) bumps
  `index_state.version` and logs the experts it touched in `index_changes` under that version;
- a blob is deleted only by a transaction that holds its `blob_claims` row locked and sees no
  revision referencing it and no writer between its put and its commit (`registry.services.blob_claims`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from registry.wire.common import Summary
from registry.wire.experts import FidelitySummary
from registry.wire.limits import (
    BASE_MODEL_LENGTH,
    DATASET_LENGTH,
    ID_PART_LENGTH,
    LICENSE_LENGTH,
    TAG_LENGTH,
    TOKEN_NAME_LENGTH,
    VARIANT_LENGTH,
)

SHA256_HEX_LENGTH = 64
EMBEDDER_LENGTH = 128


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone on its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


def utc_now() -> datetime:
    """The one clock of the registry."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with named constraints, so Alembic's batch mode can alter them on SQLite."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class User(Base):
    """An account; its name is also the owner namespace of its experts."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(ID_PART_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user")


Index("uq_users_lower_name", func.lower(User.name), unique=True)


class ApiToken(Base):
    """A bearer token, stored as a salted hash; `lookup_id` is the public part used to find it.

    A token is refused once `revoked_at` is set or `expires_at` has passed; the row stays, so
    `token list` can say what happened to it and the lookup id is never handed out again.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    lookup_id: Mapped[str] = mapped_column(String(32), unique=True)
    salt: Mapped[str] = mapped_column(String(64))
    secret_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH))
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str | None] = mapped_column(String(TOKEN_NAME_LENGTH), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    user: Mapped[User] = relationship(back_populates="tokens")


class Expert(Base):
    """`owner/name`: a sequence of immutable revisions; soft-deleted by setting `deleted_at`."""

    __tablename__ = "experts"
    __table_args__ = (
        Index(
            "uq_experts_live_owner_name",
            "owner_id",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(ID_PART_LENGTH))
    latest_revision: Mapped[int] = mapped_column(default=0)
    # Numbers taken by earlier (deleted) experts of the name: this one's revisions follow them.
    revisions_before: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    owner: Mapped[User] = relationship()
    revisions: Mapped[list[Revision]] = relationship(
        back_populates="expert", order_by="Revision.revision"
    )
    # `select(...).join(Expert.latest)` pairs each expert with its latest revision.
    latest: Mapped[Revision] = relationship(
        primaryjoin="and_(Expert.id == foreign(Revision.expert_id), "
        "Expert.latest_revision == foreign(Revision.revision))",
        viewonly=True,
    )


# `uq_experts_live_owner_name` serves exact lookups; this one makes `alice/Trivia` and `alice/trivia`
# the same live name.
Index(
    "uq_experts_live_owner_lower_name",
    Expert.owner_id,
    func.lower(Expert.name),
    unique=True,
    sqlite_where=text("deleted_at IS NULL"),
    postgresql_where=text("deleted_at IS NULL"),
)


class Revision(Base):
    """One compressed upload: where its blob is, what it was made from, what it is for."""

    __tablename__ = "revisions"
    __table_args__ = (UniqueConstraint("expert_id", "number", name="uq_revisions_expert_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    expert_id: Mapped[int] = mapped_column(ForeignKey("experts.id"), index=True)
    # Attributes carry the API's names (`registry.wire.experts`), so the answers are built from
    # the row with `from_attributes`; three columns keep their older names (no migration).
    revision: Mapped[int] = mapped_column("number")
    blob_sha256: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), index=True)
    blob_bytes: Mapped[int] = mapped_column("blob_size", BigInteger)
    blob_missing: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    original_bytes: Mapped[int] = mapped_column("original_size", BigInteger)
    original_dtype: Mapped[str] = mapped_column(String(32))
    num_params: Mapped[int] = mapped_column(BigInteger)
    density: Mapped[float]
    scope: Mapped[str] = mapped_column(String(16))
    sigma_min: Mapped[float]
    sigma_mean: Mapped[float]
    sigma_max: Mapped[float]
    alpha_min: Mapped[float]
    alpha_mean: Mapped[float]
    alpha_max: Mapped[float]
    factorisation: Mapped[str] = mapped_column(String(16), server_default="as-trained")
    scale: Mapped[str] = mapped_column(String(16), server_default="entry")
    codec: Mapped[str] = mapped_column(String(16), server_default="compeft")
    value_bits: Mapped[int] = mapped_column(server_default="0")
    # Fidelity (compeft_core.fidelity) over the modules; NULL before uploads measured it.
    error_min: Mapped[float | None]
    error_mean: Mapped[float | None]
    error_max: Mapped[float | None]
    cosine_min: Mapped[float | None]
    cosine_mean: Mapped[float | None]
    cosine_max: Mapped[float | None]
    base_model: Mapped[str | None] = mapped_column(String(BASE_MODEL_LENGTH), index=True)
    peft_type: Mapped[str] = mapped_column(String(32), index=True)
    rank: Mapped[int | None]
    lora_alpha: Mapped[float | None]
    target_modules: Mapped[list[str]] = mapped_column(JSON)
    adapter_config_text: Mapped[str] = mapped_column("adapter_config", Text)
    task_description: Mapped[str] = mapped_column(Text)
    sample_inputs: Mapped[list[str]] = mapped_column(JSON)
    message: Mapped[str | None] = mapped_column(Text)
    license: Mapped[str | None] = mapped_column(String(LICENSE_LENGTH), index=True)
    base_model_variant: Mapped[str | None] = mapped_column(String(VARIANT_LENGTH), index=True)
    model_card: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)

    expert: Mapped[Expert] = relationship(back_populates="revisions")
    tag_rows: Mapped[list[RevisionTag]] = relationship(
        cascade="all, delete-orphan", order_by="RevisionTag.tag", lazy="selectin"
    )
    dataset_rows: Mapped[list[RevisionDataset]] = relationship(
        cascade="all, delete-orphan", order_by="RevisionDataset.dataset", lazy="selectin"
    )
    embedding: Mapped[RevisionEmbedding | None] = relationship(cascade="all, delete-orphan")

    @property
    def owner_and_name(self) -> str:
        """`owner/name`: the expert's id as the API names it (`id` is the row's key)."""
        return f"{self.expert.owner.name}/{self.expert.name}"

    @property
    def tags(self) -> list[str]:
        """The tags as plain strings, sorted."""
        return [tag.tag for tag in self.tag_rows]

    @property
    def datasets(self) -> list[str]:
        """The training data sets' ids, sorted."""
        return [row.dataset for row in self.dataset_rows]

    @property
    def compression_ratio(self) -> float:
        """Uploaded safetensors bytes per blob byte (in whatever dtype the file was)."""
        return self.original_bytes / self.blob_bytes

    @property
    def compression_ratio_fp16(self) -> float:
        """The adapter's parameters at 2 bytes each per blob byte: the ratio that does not
        depend on the dtype it was uploaded in, as adapters are shipped in fp16."""
        return 2 * self.num_params / self.blob_bytes

    @property
    def bits_per_param(self) -> float:
        """Blob bits per dense parameter of the adapter."""
        return 8 * self.blob_bytes / self.num_params

    @property
    def adapter_config(self) -> dict[str, Any]:
        """The uploaded adapter_config.json, parsed (it was validated as a JSON object)."""
        parsed: dict[str, Any] = json.loads(self.adapter_config_text)
        return parsed

    @property
    def sigma(self) -> Summary:
        return Summary(min=self.sigma_min, mean=self.sigma_mean, max=self.sigma_max)

    @property
    def default_alpha(self) -> Summary:
        return Summary(min=self.alpha_min, mean=self.alpha_mean, max=self.alpha_max)

    @property
    def fidelity(self) -> FidelitySummary | None:
        """The fidelity measured at upload; None for revisions uploaded before it was."""
        if self.error_mean is None:
            return None
        return FidelitySummary(
            relative_error=Summary(min=self.error_min, mean=self.error_mean, max=self.error_max),
            cosine=Summary(min=self.cosine_min, mean=self.cosine_mean, max=self.cosine_max),
        )


class RevisionTag(Base):
    """One tag of one revision; a table (not JSON) so experts can be filtered by tag."""

    __tablename__ = "revision_tags"

    revision_id: Mapped[int] = mapped_column(
        ForeignKey("revisions.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(TAG_LENGTH), primary_key=True, index=True)


class RevisionDataset(Base):
    """One training data set of one revision; a table so experts can be filtered by data set."""

    __tablename__ = "revision_datasets"

    revision_id: Mapped[int] = mapped_column(
        ForeignKey("revisions.id", ondelete="CASCADE"), primary_key=True
    )
    dataset: Mapped[str] = mapped_column(String(DATASET_LENGTH), primary_key=True, index=True)


class RevisionEmbedding(Base):
    """The task embedding of one revision and the embedder (name, version) that produced it.

    A table of its own because revisions are immutable while embeddings are replaced by
    `compeft-hub reembed` when the embedder changes. `vector` holds `dim` little-endian float32s;
    `lexical` the hashed n-grams of the same texts (`retrieval.lexical`, NULL for rows made before
    lexical vectors existed), in the recipe `lexical_version` names; `description_vector` the
    embedding of the task description alone, `dim` float32s from the same embedder (NULL for rows
    made before such vectors existed).
    """

    __tablename__ = "revision_embeddings"

    revision_id: Mapped[int] = mapped_column(
        ForeignKey("revisions.id", ondelete="CASCADE"), primary_key=True
    )
    embedder: Mapped[str] = mapped_column(String(EMBEDDER_LENGTH))
    embedder_version: Mapped[str] = mapped_column(String(EMBEDDER_LENGTH))
    dim: Mapped[int]
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    lexical: Mapped[bytes | None] = mapped_column(LargeBinary)
    lexical_version: Mapped[str | None] = mapped_column(String(EMBEDDER_LENGTH))
    description_vector: Mapped[bytes | None] = mapped_column(LargeBinary)


class IndexState(Base):
    """One row whose `version` counts the changes search has to follow (see `index_log`)."""

    __tablename__ = "index_state"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)


class IndexChange(Base):
    """An expert whose searchable state (latest embedding, deletion) changed at `version`."""

    __tablename__ = "index_changes"

    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    expert_id: Mapped[int] = mapped_column(ForeignKey("experts.id"), primary_key=True)


class BlobClaim(Base):
    """The writers of one blob that have put it (or are about to) and not yet committed or given up.

    Content addressing lets uploads of the same bytes share a blob, so "is this blob still needed"
    is a question about other requests and processes. Its row is the lock that orders every writer
    against every deleter: see `registry.services.blob_claims`. `claimed_at` is the latest claim, so a
    count left behind by a killed process is recognised as stale once it is old.
    """

    __tablename__ = "blob_claims"

    sha256: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), primary_key=True)
    writers: Mapped[int] = mapped_column(default=0)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
