"""SeaweedFS stopped while an upload's body is streaming: 503 with a clear message, no row, no blob.

A live uvicorn server stores blobs on the real SeaweedFS server of the `s3_server` fixture. The
client sends half of a 1 MiB adapter upload, the test stops SeaweedFS, then the rest is sent: the
blob put fails (after botocore's retries) and the upload must commit nothing. Reads of blobs fail
the same way while it is down, and everything works again once it is started (same data folder).
Repeated COMPEFT_HUB_FAULT_ROUNDS times (default 1).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bench.adapter_files import AdapterFiles, lora_adapter, lora_config, lora_tensors
from bench.api_process import AcknowledgedUpload, damaged_uploads, upload_form, upload_path
from bench.seaweedfs import SeaweedS3
from registry.api.app import create_app
from tests.fixtures.faults import FAULT_ROUNDS
from tests.fixtures.registry import Hub, auth, s3_store_url, served_over_http

STORAGE_DOWN = "blob storage temporarily unavailable; retry later"


def large_adapter(seed: int) -> AdapterFiles:
    """A LoRA with 1 MiB of weights: its upload body takes a while to stream."""
    return AdapterFiles.of(lora_config(r=16), lora_tensors(seed=seed, rank=16, width=2048))


@pytest.fixture
def blob_store_url(s3_server: SeaweedS3, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    return s3_store_url(s3_server, s3_bucket, monkeypatch)


@pytest.fixture
def client(hub: Hub, s3_server: SeaweedS3) -> Iterator[httpx.Client]:
    """A client of a uvicorn server on the hub's settings; SeaweedFS is running again afterwards."""
    try:
        with (
            served_over_http(create_app(hub.settings)) as url,
            httpx.Client(base_url=url, timeout=120) as client,
        ):
            yield client
    finally:
        s3_server.start()


def body_that_stops(s3_server: SeaweedS3, request: httpx.Request) -> Iterator[bytes]:
    """The request's body in two halves, with SeaweedFS stopped between them."""
    body = request.read()
    yield body[: len(body) // 2]
    s3_server.stop()
    yield body[len(body) // 2 :]


def test_seaweedfs_stopped_mid_upload_answers_503_and_commits_nothing(
    hub: Hub, client: httpx.Client, s3_server: SeaweedS3
) -> None:
    token = hub.token("alice")
    first = client.post(
        upload_path("alice/big"), **upload_form(lora_adapter(seed=1)), headers=auth(token)
    )
    assert first.status_code == 201, first.text
    acknowledged = [AcknowledgedUpload.from_answer(first.json())]
    blob_path = "/api/v1/experts/alice/big/revisions/1/blob"
    for round_number in range(FAULT_ROUNDS):
        large = large_adapter(seed=round_number)
        request = client.build_request(
            "POST", upload_path("alice/big"), **upload_form(large), headers=auth(token)
        )
        upload = client.post(
            request.url.path, content=body_that_stops(s3_server, request), headers=request.headers
        )
        assert upload.status_code == 503, upload.text
        assert upload.json() == {"detail": STORAGE_DOWN}
        assert upload.headers["retry-after"]
        assert client.get(blob_path).status_code == 503
        assert hub.revision_count() == len(acknowledged)

        s3_server.start()
        assert hub.blob_keys() == {upload.blob_sha256 for upload in acknowledged}
        assert client.get(blob_path).status_code == 200
        again = client.post(upload_path("alice/big"), **upload_form(large), headers=auth(token))
        assert again.status_code == 201, again.text
        acknowledged.append(AcknowledgedUpload.from_answer(again.json()))
    assert [upload.revision for upload in acknowledged] == list(range(1, FAULT_ROUNDS + 2))
    assert damaged_uploads(client, acknowledged) == []
