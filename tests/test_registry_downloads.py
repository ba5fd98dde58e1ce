"""Blob downloads: ETag = sha256, conditional requests, one Range for resuming."""

from __future__ import annotations

import hashlib

import pytest

from bench.adapter_files import lora_adapter
from registry.api.downloads import ByteRange, parse_range
from registry.errors import RangeNotSatisfiableError
from tests.fixtures.registry import Hub

BLOB_URL = "/api/v1/experts/alice/trivia/revisions/1/blob"


@pytest.fixture
def blob(hub: Hub) -> bytes:
    """The stored bytes of alice/trivia revision 1."""
    body = hub.upload("alice/trivia", lora_adapter(), token=hub.token("alice")).json()
    return hub.store.get_bytes(body["blob_sha256"])


def test_whole_blob_has_its_sha256_as_etag(hub: Hub, blob: bytes) -> None:
    response = hub.client.get(BLOB_URL)
    assert response.status_code == 200
    assert response.content == blob
    assert response.headers["etag"] == f'"{hashlib.sha256(blob).hexdigest()}"'
    assert response.headers["content-length"] == str(len(blob))
    assert response.headers["accept-ranges"] == "bytes"
    # Saved under a name that does not promise a file peft loads.
    assert (
        response.headers["content-disposition"]
        == 'attachment; filename="alice--trivia--r1.compeft"'
    )


def test_current_etag_answers_304(hub: Hub, blob: bytes) -> None:
    etag = hashlib.sha256(blob).hexdigest()
    for if_none_match in (f'"{etag}"', f'W/"{etag}"', f'"other", "{etag}"', "*"):
        response = hub.client.get(BLOB_URL, headers={"If-None-Match": if_none_match})
        assert (response.status_code, response.content) == (304, b""), if_none_match


def test_other_etag_answers_the_blob(hub: Hub, blob: bytes) -> None:
    response = hub.client.get(BLOB_URL, headers={"If-None-Match": '"0000"'})
    assert (response.status_code, response.content) == (200, blob)


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-9", 0, 10),
        ("bytes=10-", 10, None),
        ("bytes=-5", -5, None),
        ("bytes=3-999999", 3, None),
    ],
)
def test_single_range_answers_206(
    hub: Hub, blob: bytes, header: str, start: int, end: int | None
) -> None:
    response = hub.client.get(BLOB_URL, headers={"Range": header})
    expected = blob[start:end]
    first = start % len(blob)
    assert response.status_code == 206
    assert response.content == expected
    assert (
        response.headers["content-range"]
        == f"bytes {first}-{first + len(expected) - 1}/{len(blob)}"
    )


def test_resumed_download_reassembles_the_blob(hub: Hub, blob: bytes) -> None:
    head = hub.client.get(BLOB_URL, headers={"Range": "bytes=0-99"}).content
    tail = hub.client.get(BLOB_URL, headers={"Range": f"bytes={len(head)}-"}).content
    assert head + tail == blob


UNSATISFIABLE_OR_MALFORMED = (
    "bytes=100000-",
    "bytes=-0",
    "bytes=9-3",
    "bytes=abc",
    "bytes=-",
    "items=0-1",
    "bytes=0-1,4-5",
    "bytes=--1",
    "bytes=" + "9" * 5000 + "-",
)


def test_unsatisfiable_or_malformed_range_answers_416(hub: Hub, blob: bytes) -> None:
    for header in UNSATISFIABLE_OR_MALFORMED:
        response = hub.client.get(BLOB_URL, headers={"Range": header})
        assert response.status_code == 416, header
        assert response.headers["content-range"] == f"bytes */{len(blob)}"
        assert "Range" in response.json()["detail"]


def test_blob_lost_from_the_store_answers_404(hub: Hub, blob: bytes) -> None:
    hub.store.delete(hashlib.sha256(blob).hexdigest())
    response = hub.client.get(BLOB_URL)
    assert response.status_code == 404
    assert response.json() == {  # no path or bucket of the server
        "detail": "the blob is missing from storage; an operator can run `compeft-hub fsck`"
    }


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, ByteRange(0, 1, 10)),
        ("bytes=9-", 10, ByteRange(9, 10, 10)),
        ("bytes=-20", 10, ByteRange(0, 10, 10)),
        (" bytes=2-4 ", 10, ByteRange(2, 5, 10)),
    ],
)
def test_parse_range_selects_inclusive_bounds(header: str, size: int, expected: ByteRange) -> None:
    assert parse_range(header, size) == expected


def test_parse_range_refuses_everything_on_an_empty_blob() -> None:
    with pytest.raises(RangeNotSatisfiableError):
        parse_range("bytes=0-", 0)


def test_latest_blob_redirects_to_the_numbered_revision_and_is_never_cached(
    hub: Hub, blob: bytes
) -> None:
    """`latest` moves with the next upload, so only the numbered URL may say `immutable`."""
    latest = "/api/v1/experts/alice/trivia/revisions/latest/blob"
    moved = hub.client.get(latest, follow_redirects=False)
    assert moved.status_code == 307
    assert moved.headers["location"] == BLOB_URL
    assert moved.headers["cache-control"] == "no-cache"
    assert "immutable" in hub.client.get(BLOB_URL).headers["cache-control"]
    hub.upload("alice/trivia", lora_adapter(seed=5), token=hub.token("alice"))
    moved_on = hub.client.get(latest, follow_redirects=False)
    assert moved_on.headers["location"] == BLOB_URL.replace("/1/", "/2/")
    assert hub.client.get(BLOB_URL).content == blob  # revision 1 still serves its bytes


def test_if_range_with_the_current_etag_serves_the_range_and_otherwise_the_whole_blob(
    hub: Hub, blob: bytes
) -> None:
    etag = f'"{hashlib.sha256(blob).hexdigest()}"'
    current = hub.client.get(BLOB_URL, headers={"Range": "bytes=10-", "If-Range": etag})
    assert (current.status_code, current.content) == (206, blob[10:])
    for stale in ('"0000"', f"W/{etag}", "Tue, 01 Dec 2026 10:00:00 GMT"):
        whole = hub.client.get(BLOB_URL, headers={"Range": "bytes=10-", "If-Range": stale})
        assert (whole.status_code, whole.content) == (200, blob), stale
        assert "content-range" not in whole.headers


def test_head_answers_the_size_and_etag_without_the_bytes(hub: Hub, blob: bytes) -> None:
    head = hub.client.head(BLOB_URL)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(blob))
    assert head.headers["etag"] == f'"{hashlib.sha256(blob).hexdigest()}"'
    ranged = hub.client.head(BLOB_URL, headers={"Range": "bytes=0-9"})
    assert (ranged.status_code, ranged.headers["content-range"]) == (206, f"bytes 0-9/{len(blob)}")
    hub.store.delete(hashlib.sha256(blob).hexdigest())
    assert hub.client.head(BLOB_URL).status_code == 404
