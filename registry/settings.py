"""Every knob of the registry in one pydantic-settings class, read from `COMPEFT_HUB_*` variables.

The defaults give the embedded setup: a SQLite file and a blob folder under one data directory,
upgraded automatically on start. Production points `database_url` at PostgreSQL and
`blob_store_url` at S3; there the schema is upgraded only by `compeft-hub db upgrade`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import AliasChoices, AnyHttpUrl, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from compeft_core.codec import MAX_TENSORS
from compeft_core.formats import DEFAULT_CODEC, CodecName
from registry.origin import public_origin
from registry.serving import ConnectionDeadlines
from retrieval.shard import IndexConfig

MiB = 1024 * 1024


class Settings(BaseSettings):
    """Validated at construction; a bad value stops the process with pydantic's message."""

    model_config = SettingsConfigDict(env_prefix="COMPEFT_HUB_", extra="ignore")

    data_dir: Path = Field(
        default=Path("./hub-data"),
        description="Folder of the embedded defaults (SQLite file, blob folder).",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("COMPEFT_HUB_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="SQLAlchemy URL; default: a SQLite file in data_dir.",
    )
    blob_store_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "COMPEFT_HUB_BLOB_STORE_URL", "COMPEFT_HUB_STORAGE_URL", "blob_store_url"
        ),
        description="file:///abs/dir or s3://bucket/prefix; default: data_dir/blobs.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible server, added to an s3:// blob_store_url.",
    )
    auto_upgrade: bool | None = Field(
        default=None,
        description="Upgrade the schema on start; default: only for the embedded SQLite file.",
    )
    max_upload_bytes: int = Field(default=512 * MiB, gt=0)
    max_metadata_bytes: int = Field(default=256 * 1024, gt=0)
    max_config_bytes: int = Field(default=1 * MiB, gt=0)
    max_model_card_bytes: int = Field(
        default=256 * 1024, gt=0, description="The largest README.md (model card) an upload keeps."
    )
    max_tensors: int = Field(
        default=10_000,
        gt=0,
        le=MAX_TENSORS,
        description="Tensors one adapter may hold, checked before any is read (at most the blob "
        "format's limit).",
    )
    writes_per_minute: int = Field(
        default=120,
        ge=0,
        description="Uploads and deletes a token may make per minute, per API process (0: no "
        "limit); see registry/api/rate_limits.py.",
    )
    write_burst: int = Field(default=60, gt=0, description="Writes a token may make at once.")
    requests_per_minute: int = Field(
        default=1200,
        ge=0,
        description="API and page requests one client address may make per minute, per API "
        "process (0: no limit); /healthz is not counted.",
    )
    request_burst: int = Field(
        default=300, gt=0, description="Requests one client address may make at once."
    )
    max_request_bytes: int = Field(
        default=1 * MiB,
        gt=0,
        description="Largest body of any request but an upload (413 beyond it).",
    )
    default_density: float = Field(default=0.1, gt=0.0, le=1.0)
    default_scope: Literal["tensor", "global"] = "tensor"
    default_factorisation: Literal["as-trained", "balanced"] = "balanced"
    default_scale: Literal["entry", "unbiased"] = "unbiased"
    default_codec: CodecName = Field(
        default=DEFAULT_CODEC,
        description="The delta codec of uploads that name none; default_factorisation and "
        "default_scale apply to compeft only (the others use their own, docs/blob-format.md).",
    )
    search_ann_threshold: int = Field(
        default=IndexConfig().ann_threshold,
        gt=0,
        description="A base model's experts are searched with HNSW instead of exactly from here on.",
    )
    keep_alive_s: int = Field(
        default=ConnectionDeadlines.keep_alive_s,
        gt=0,
        description="Seconds an idle keep-alive connection stays open; keep it above the idle "
        "timeout of the proxies and clients in front (they should close first).",
    )
    header_timeout_s: float = Field(
        default=ConnectionDeadlines.header_timeout_s,
        gt=0,
        description="Seconds a client has to send a request's line and headers.",
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a request body may stall between two chunks (408 beyond).",
    )
    public_url: AnyHttpUrl | None = Field(
        default=None,
        description="The hub's address as clients reach it (https://hub.example.org), for "
        "absolute links; default: the listening socket's address. Never the Host header.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        """Derive the embedded defaults from data_dir; only they upgrade themselves by default."""
        data_dir = self.data_dir.expanduser().resolve()
        embedded_database = self.database_url is None
        if embedded_database:
            self.database_url = f"sqlite:///{data_dir / 'hub.sqlite3'}"
        if self.blob_store_url is None:
            self.blob_store_url = (data_dir / "blobs").as_uri()
        if self.auto_upgrade is None:
            self.auto_upgrade = embedded_database
        return self

    @field_validator("public_url")
    @classmethod
    def _origin_only(cls, url: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if url is not None:
            public_origin(str(url))
        return url

    @property
    def connection_deadlines(self) -> ConnectionDeadlines:
        return ConnectionDeadlines(
            keep_alive_s=self.keep_alive_s, header_timeout_s=self.header_timeout_s
        )

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, filled in by the validator."""
        assert self.database_url is not None
        return self.database_url

    @property
    def storage_url(self) -> str:
        """The blob store URL, with `s3_endpoint_url` added when the URL does not name one."""
        assert self.blob_store_url is not None
        parts = urlsplit(self.blob_store_url)
        query = dict(parse_qsl(parts.query))
        if parts.scheme != "s3" or self.s3_endpoint_url is None or "endpoint_url" in query:
            return self.blob_store_url
        query["endpoint_url"] = self.s3_endpoint_url
        return urlunsplit(parts._replace(query=urlencode(query)))
