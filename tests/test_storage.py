"""One specification for every blob backend: a local folder, and S3 on a real SeaweedFS server."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from bench.seaweedfs import SeaweedS3, free_ports
from storage import (
    BlobNotFoundError,
    BlobStore,
    LocalBlobStore,
    S3BlobStore,
    StorageError,
    open_blob_store,
)

MIB = 1024 * 1024
PART = 5 * MIB  # the smallest multipart threshold S3 allows; lowered so 12 MiB takes 3 parts


def make_blob(size: int) -> tuple[bytes, str]:
    data = os.urandom(size)
    return data, hashlib.sha256(data).hexdigest()


def put(store: BlobStore, data: bytes) -> str:
    key = hashlib.sha256(data).hexdigest()
    store.put_stream(key, io.BytesIO(data), sha256=key, size=len(data))
    return key


class Trickle(io.RawIOBase):
    """A stream that returns at most `step` bytes per read, like a socket does."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = io.BytesIO(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(self._step, size if size >= 0 else self._step))


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """Each backend in turn; S3 gets a fresh bucket and a non-empty prefix."""
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    server: SeaweedS3 = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    return S3BlobStore(
        bucket, prefix="experts/v1", client=server.client(), multipart_threshold=PART
    )


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1000])
def test_small_blob_round_trips_byte_exact(store: BlobStore, size: int) -> None:
    data, key = make_blob(size)
    store.put_stream(key, io.BytesIO(data), sha256=key, size=size)
    assert store.get_bytes(key) == data
    assert store.size(key) == size
    assert store.exists(key)


def test_multipart_sized_blob_round_trips_byte_exact_through_put_file(
    store: BlobStore, tmp_path: Path
) -> None:
    data, key = make_blob(12 * MIB + 123)
    path = tmp_path / "blob.safetensors"
    path.write_bytes(data)
    store.put_file(key, path, sha256=key)
    assert store.get_bytes(key) == data
    assert store.size(key) == len(data)
    across_part_boundary = b"".join(store.open(key, start=PART - 10, end=PART + 10))
    assert across_part_boundary == data[PART - 10 : PART + 10]


def test_put_stream_fills_up_short_reads(store: BlobStore) -> None:
    data, key = make_blob(PART + 1000)
    store.put_stream(key, Trickle(data, 64 * 1024 + 1), sha256=key, size=len(data))
    assert store.get_bytes(key) == data


def test_putting_the_same_blob_twice_stores_it_once(store: BlobStore) -> None:
    data, _ = make_blob(100)
    key = put(store, data)
    put(store, data)
    assert list(store.keys()) == [key]
    assert store.get_bytes(key) == data


# --- integrity -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1000, 6 * MIB], ids=["single-put", "multipart"])
def test_sha256_mismatch_is_refused_and_nothing_is_stored(store: BlobStore, size: int) -> None:
    data, key = make_blob(size)
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(StorageError, match="sha256 mismatch"):
        store.put_stream(key, io.BytesIO(data), sha256=wrong, size=size)
    assert not store.exists(key)
    assert list(store.keys()) == []


def test_stream_shorter_than_announced_is_refused_and_nothing_is_stored(store: BlobStore) -> None:
    data, key = make_blob(1000)
    with pytest.raises(StorageError, match="stream ended after 1000 of 2000 bytes"):
        store.put_stream(key, io.BytesIO(data), sha256=key, size=2000)
    assert not store.exists(key)


def test_local_refused_put_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    data, key = make_blob(1000)
    with pytest.raises(StorageError):
        store.put_stream(key, io.BytesIO(data), sha256="0" * 64, size=len(data))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_s3_refused_multipart_upload_is_aborted(s3_server: SeaweedS3, s3_bucket: str) -> None:
    client = s3_server.client()
    store = S3BlobStore(s3_bucket, client=client, multipart_threshold=PART)
    data, key = make_blob(PART + 1)
    with pytest.raises(StorageError):
        store.put_stream(key, io.BytesIO(data), sha256="0" * 64, size=len(data))
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=s3_bucket).get("Contents", []) == []


def test_s3_blob_above_threshold_is_uploaded_in_parts(s3_server: SeaweedS3, s3_bucket: str) -> None:
    client = s3_server.client()
    store = S3BlobStore(s3_bucket, client=client, multipart_threshold=PART)
    key = put(store, make_blob(2 * PART + 1)[0])
    assert client.head_object(Bucket=s3_bucket, Key=key)["ETag"].endswith('-3"')


# --- ranges --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 10), (10, 20), (990, None), (0, None), (5, 5), (995, 2000), (1000, None), (2000, 3000)],
)
def test_range_read_returns_the_same_bytes_as_slicing(
    store: BlobStore, start: int, end: int | None
) -> None:
    data, _ = make_blob(1000)
    key = put(store, data)
    assert b"".join(store.open(key, start=start, end=end)) == data[start:end]


@pytest.mark.parametrize(("start", "end"), [(-1, None), (10, 5)])
def test_meaningless_range_is_refused(store: BlobStore, start: int, end: int | None) -> None:
    key = put(store, b"abc")
    with pytest.raises(ValueError, match="invalid byte range"):
        store.open(key, start=start, end=end)


# --- presence, deletion, listing -----------------------------------------------------------


def test_missing_key_raises_blob_not_found(store: BlobStore) -> None:
    key = hashlib.sha256(b"never stored").hexdigest()
    assert not store.exists(key)
    with pytest.raises(BlobNotFoundError):
        store.size(key)
    with pytest.raises(BlobNotFoundError):
        store.open(key)  # raised at the call, before any iteration
    with pytest.raises(BlobNotFoundError):
        store.open(key, start=3, end=3)


def test_delete_removes_the_blob_and_is_idempotent(store: BlobStore) -> None:
    key = put(store, b"to be deleted")
    store.delete(key)
    assert not store.exists(key)
    store.delete(key)


def test_keys_lists_every_stored_blob(store: BlobStore) -> None:
    stored = {put(store, make_blob(10)[0]) for _ in range(5)}
    assert set(store.keys()) == stored


def test_s3_stores_with_different_prefixes_do_not_see_each_other(
    s3_server: SeaweedS3, s3_bucket: str
) -> None:
    client = s3_server.client()
    first = S3BlobStore(s3_bucket, prefix="a", client=client)
    second = S3BlobStore(s3_bucket, prefix="ab", client=client)
    unprefixed = S3BlobStore(s3_bucket, client=client)
    first_key, second_key = put(first, b"first"), put(second, b"second")
    assert list(first.keys()) == [first_key]
    assert list(second.keys()) == [second_key]
    assert list(unprefixed.keys()) == []
    assert not second.exists(first_key)


def test_local_store_shards_keys_into_two_folder_levels(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    key = put(store, b"sharded")
    assert (tmp_path / key[:2] / key[2:4] / key).read_bytes() == b"sharded"


def test_local_keys_skip_files_that_are_not_blobs(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    key = put(store, b"real")
    (tmp_path / key[:2] / key[2:4] / ".tmp-upload-in-progress").write_bytes(b"partial")
    (tmp_path / "README").write_text("not a blob")
    assert list(store.keys()) == [key]


@pytest.mark.parametrize(
    "bad_key",
    ["../x", "../" + "a" * 61, "A" * 64, "a" * 63, "a" * 65, "", "g" * 64, "a" * 62 + "/b"],
)
def test_invalid_keys_are_refused(store: BlobStore, bad_key: str) -> None:
    operations = [
        lambda: store.put_stream(bad_key, io.BytesIO(b"x"), sha256=bad_key, size=1),
        lambda: store.open(bad_key),
        lambda: store.size(bad_key),
        lambda: store.exists(bad_key),
        lambda: store.delete(bad_key),
    ]
    for operation in operations:
        with pytest.raises(ValueError, match="invalid blob key"):
            operation()


# --- failures of the S3 endpoint -----------------------------------------------------------


def test_s3_endpoint_on_a_closed_port_raises_storage_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "any")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "any")
    endpoint = f"http://127.0.0.1:{free_ports(1)[0]}"
    store = S3BlobStore("bucket", endpoint_url=endpoint, max_attempts=1, connect_timeout=1.0)
    key = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(StorageError, match=f"S3 endpoint {endpoint} unreachable"):
        store.exists(key)
    with pytest.raises(StorageError, match=f"S3 endpoint {endpoint} unreachable"):
        put(store, b"x")


def test_s3_wrong_secret_key_is_refused(s3_server: SeaweedS3, s3_bucket: str) -> None:
    good = S3BlobStore(s3_bucket, client=s3_server.client())
    key = put(good, b"guarded")
    bad = S3BlobStore(s3_bucket, client=s3_server.client(secret_key="wrong-secret"))
    with pytest.raises(StorageError, match="403") as refused:
        bad.exists(key)
    assert not isinstance(refused.value, BlobNotFoundError)
    with pytest.raises(StorageError, match="SignatureDoesNotMatch"):
        put(bad, b"intruder")


# --- choosing a backend from a URL ---------------------------------------------------------


def test_plain_path_and_file_url_open_a_local_store(tmp_path: Path) -> None:
    for url in (str(tmp_path), tmp_path.as_uri()):
        store = open_blob_store(url)
        assert isinstance(store, LocalBlobStore)
        assert store.root == tmp_path


def test_s3_url_carries_bucket_prefix_endpoint_and_region() -> None:
    store = open_blob_store(
        "s3://hub-blobs/experts/v1?endpoint_url=http://127.0.0.1:8333&region=eu-west-1"
    )
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix, store.endpoint_url) == (
        "hub-blobs",
        "experts/v1",
        "http://127.0.0.1:8333",
    )


def test_s3_url_without_endpoint_uses_the_aws_environment(
    s3_server: SeaweedS3, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    store = open_blob_store(f"s3://{s3_bucket}/from-env")
    data, _ = make_blob(1000)
    assert store.get_bytes(put(store, data)) == data


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("gs://bucket/x", r"unsupported blob store URL scheme 'gs'.*file://, s3://"),
        ("s3:///prefix", "without a bucket"),
        ("s3://bucket?endpoint=http://x", "unknown S3 URL options"),
        ("file://otherhost/data", "expected file:///absolute/path"),
        ("", "empty"),
    ],
)
def test_malformed_or_unknown_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_blob_store(url)
