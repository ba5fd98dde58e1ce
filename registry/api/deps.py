"""FastAPI dependencies: the request's database session, blob store, settings, search and caller.

Everything comes from `app.state`, set once by `create_app`, so tests and servers differ only in
the Settings they pass in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from registry.api.rate_limits import RateLimiter
from registry.errors import AuthenticationError
from registry.ids import ExpertId
from registry.services.accounts import Caller, authenticate
from registry.services.search import ExpertSearch
from registry.settings import Settings
from retrieval.embedder import TaskEmbedder
from storage import BlobStore

_bearer = HTTPBearer(auto_error=False, description="A token from `compeft-hub token create`.")


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; whatever was not committed is rolled back when it closes."""
    with request.app.state.session_factory() as session:
        yield session


def get_store(request: Request) -> BlobStore:
    store: BlobStore = request.app.state.blob_store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_search(request: Request) -> ExpertSearch:
    search: ExpertSearch = request.app.state.search
    return search


def get_embedder(request: Request) -> TaskEmbedder:
    return get_search(request).embedder


SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[BlobStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SearchDep = Annotated[ExpertSearch, Depends(get_search)]
EmbedderDep = Annotated[TaskEmbedder, Depends(get_embedder)]


def get_caller(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The token's user; 401 when the Authorization header is missing or the token unknown."""
    if credentials is None:
        raise AuthenticationError("this needs a token: send `Authorization: Bearer <token>`")
    return authenticate(session, credentials.credentials)


CallerDep = Annotated[Caller, Depends(get_caller)]


def get_writer(request: Request, caller: CallerDep) -> Caller:
    """The caller of a write, counted against its token's rate limit (429 when exhausted)."""
    limiter: RateLimiter = request.app.state.write_limiter
    limiter.take(caller.token_id)
    return caller


WriterDep = Annotated[Caller, Depends(get_writer)]


def count_request_of_address(request: Request) -> None:
    """Count the request against its client address's rate limit (429 when exhausted)."""
    limiter: RateLimiter = request.app.state.address_limiter
    limiter.take(request.client.host if request.client else "unknown")


def get_expert_id(
    owner: Annotated[str, Path(description="Owner (user name).")],
    name: Annotated[str, Path(description="Expert name.")],
) -> ExpertId:
    """The validated `owner/name` of the path (400 for ids the Hub would refuse)."""
    return ExpertId(owner, name)


ExpertIdDep = Annotated[ExpertId, Depends(get_expert_id)]
