"""Upload a revision, show one, download its blob."""

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response, status
from starlette.concurrency import run_in_threadpool

from registry.api import downloads
from registry.api.deps import (
    EmbedderDep,
    ExpertIdDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    WriterDep,
)
from registry.api.upload_parts import UploadLimits, receive_upload
from registry.services import catalog, uploads
from registry.services.answers import revision_detail
from registry.wire.common import ErrorBody
from registry.wire.experts import (
    CONFIG_PART,
    METADATA_PART,
    MODEL_CARD_PART,
    WEIGHTS_PART,
    RevisionCreated,
    RevisionDetail,
    UploadMetadata,
)

router = APIRouter(prefix="/experts/{owner}/{name}/revisions", tags=["revisions"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 422, 429, 503)
}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [CONFIG_PART, WEIGHTS_PART, METADATA_PART],
                    "properties": {
                        CONFIG_PART: {"type": "string", "format": "binary"},
                        WEIGHTS_PART: {"type": "string", "format": "binary"},
                        METADATA_PART: UploadMetadata.model_json_schema(),
                        MODEL_CARD_PART: {"type": "string", "format": "binary"},
                    },
                },
                "encoding": {METADATA_PART: {"contentType": "application/json"}},
            }
        },
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS,
    openapi_extra=_UPLOAD_BODY,
)
async def upload_revision(
    request: Request,
    response: Response,
    expert_id: ExpertIdDep,
    caller: WriterDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    embedder: EmbedderDep,
) -> RevisionCreated:
    """Upload a PEFT adapter (safetensors only); the hub compresses it with ComPEFT and stores
    the blob. Creates the expert on its first upload. An upload identical to the latest revision
    answers 200 with that revision (`created` false) instead of making a duplicate."""
    services = uploads.UploadServices(session, store, settings, embedder)
    uploads.begin_upload(expert_id, caller, services)
    limits = UploadLimits(
        max_body_bytes=settings.max_upload_bytes,
        max_config_bytes=settings.max_config_bytes,
        max_metadata_bytes=settings.max_metadata_bytes,
        max_model_card_bytes=settings.max_model_card_bytes,
    )
    # The parts live in a temporary folder that is removed however the upload ends.
    with tempfile.TemporaryDirectory(prefix="compeft-hub-upload-") as folder:
        received = await receive_upload(request, Path(folder), limits)
        answer = await run_in_threadpool(
            uploads.compress_and_publish,
            received,
            expert_id=expert_id,
            caller=caller,
            services=services,
        )
    if not answer.created:
        response.status_code = status.HTTP_200_OK
    return answer


@router.get("/{revision}", responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}})
def get_revision(session: SessionDep, expert_id: ExpertIdDep, revision: str) -> RevisionDetail:
    """One revision (a number or `latest`)."""
    return revision_detail(catalog.get_revision(session, expert_id, revision))


_BLOB_PATH = "/{revision}/blob"
_BLOB_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "The whole blob."},
    206: {"description": "One byte range of the blob."},
    304: {"description": "The client's copy (If-None-Match) is current."},
    307: {"description": "`latest`: the numbered revision's URL (never cached)."},
    404: {"model": ErrorBody},
    416: {"model": ErrorBody},
    503: {"model": ErrorBody},
}


@router.get(_BLOB_PATH, response_class=Response, responses=_BLOB_ANSWERS)
def download_blob(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    expert_id: ExpertIdDep,
    revision: str,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
    if_range: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The compressed blob, saved as `owner--name--rN.compeft`: a safetensors container of the
    packed ternary expert, which peft cannot load (`compeft-hub export` writes a PEFT folder);
    verify its sha256 = ETag. Supports one Range (and If-Range) and HEAD; `latest` redirects to
    the numbered revision, whose URL is immutable."""
    row = catalog.get_revision(session, expert_id, revision)
    if revision == catalog.LATEST:
        return downloads.pinned_blob_redirect(
            request.url.path.removesuffix(f"/{catalog.LATEST}/blob") + f"/{row.revision}/blob"
        )
    asked = downloads.BlobRequest(
        head=request.method == "HEAD",
        range_header=range_header,
        if_range=if_range,
        if_none_match=if_none_match,
    )
    return downloads.blob_response(store, row, asked)


router.add_api_route(  # the same answers without the bytes: a separate operation in the spec
    _BLOB_PATH,
    download_blob,
    methods=["HEAD"],
    operation_id="head_revision_blob",
    response_class=Response,
    responses=_BLOB_ANSWERS,
)
