"""The FastAPI application factory: one call wires settings, database, blob store, search, routes.

`create_app` checks the schema before returning, so a server never starts on a database it does
not understand; the embedded default (SQLite in the data directory) upgrades itself instead.
The search index is built from SQL and the embedding model loaded when the app starts serving
(its lifespan), not here: the server says it is ready only once both are done, so the first upload
or search does not wait seconds for the model.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from registry.api.body_limit import BodyLimit
from registry.api.http_errors import install_error_handlers
from registry.api.rate_limits import RateLimiter
from registry.api.routes import api_router
from registry.api.web import mount_web_ui
from registry.db.engine import create_db_engine, create_session_factory
from registry.db.schema import prepare_schema
from registry.origin import FixedOrigin
from registry.services.search import ExpertSearch
from registry.settings import Settings
from retrieval.embedder import TaskEmbedder
from retrieval.shard import IndexConfig
from storage import open_blob_store

_UPLOAD_PATH = re.compile(r"/api/v1/experts/[^/]+/[^/]+/revisions/?")


def is_upload(method: str, path: str) -> bool:
    """Uploads stream their body under their own limit (`max_upload_bytes`)."""
    return method == "POST" and _UPLOAD_PATH.fullmatch(path) is not None


def create_app(settings: Settings | None = None) -> FastAPI:
    """A ready app; raises SchemaOutOfDateError (with the command to run) or a settings error."""
    settings = settings or Settings()
    engine = create_db_engine(settings.sqlalchemy_url)
    try:
        prepare_schema(engine, auto_upgrade=bool(settings.auto_upgrade))
        blob_store = open_blob_store(settings.storage_url)
    except BaseException:
        engine.dispose()
        raise

    session_factory = create_session_factory(engine)
    search = ExpertSearch(
        session_factory,
        TaskEmbedder(),
        IndexConfig(ann_threshold=settings.search_ann_threshold),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(search.rebuild)
        await run_in_threadpool(search.embedder.load)
        yield
        engine.dispose()

    app = FastAPI(
        title="compeft-hub",
        version=version("compeft-hub"),
        summary="A registry of ComPEFT-compressed PEFT adapters.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.blob_store = blob_store
    app.state.search = search
    app.state.write_limiter = RateLimiter(settings.writes_per_minute, settings.write_burst)
    app.state.address_limiter = RateLimiter(
        settings.requests_per_minute, settings.request_burst, what="requests from your address"
    )
    install_error_handlers(app)
    app.include_router(api_router)
    mount_web_ui(app)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_request_bytes,
        stall_timeout_s=settings.body_timeout_s,
        exempt=is_upload,
    )
    public_url = None if settings.public_url is None else str(settings.public_url)
    app.add_middleware(FixedOrigin, public_url=public_url)  # outermost: before anything reads Host
    return app
