"""Blobs as objects in any S3-compatible store (AWS S3, SeaweedFS, MinIO...) through boto3.

Object name: `<prefix>/<key>` (or `<key>` without a prefix). Credentials come from boto3's default
chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, instance roles); the endpoint from the
argument or from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, which boto3 reads itself.

Integrity: every PUT and every part carries its sha256 (x-amz-checksum-sha256, computed here and sent
as a header, never as an aws-chunked trailer: see SeaweedFS #6548), so the server refuses bytes
damaged in transit; the whole blob's sha256 is checked before the object becomes visible.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from storage.base import (
    BlobNotFoundError,
    BlobStore,
    StorageError,
    check_sha256,
    is_valid_key,
    read_exactly,
    validate_key,
    validate_range,
)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3 refuses smaller parts except the last one
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
_UNSATISFIABLE_RANGE_CODES = {"416", "InvalidRange"}
_READ_CHUNK = MIB


def s3_client_config(
    *, max_attempts: int = 5, connect_timeout: float = 5.0, read_timeout: float = 60.0
) -> Config:
    """botocore settings for every client we build.

    Checksums are "when_required" on purpose: botocore >= 1.36 otherwise adds CRC32 trailers that
    some S3-compatible servers store inside the object; we send our own sha256 instead.
    """
    return Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


class S3BlobStore(BlobStore):
    """Content-addressed blobs in one bucket under an optional prefix.

    Blobs up to `multipart_threshold` bytes go up in one PUT; larger ones as a multipart upload of
    `multipart_threshold`-sized parts that is aborted on any failure, so nothing partial remains.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        multipart_threshold: int = 8 * MIB,
        client: Any = None,
        max_attempts: int = 5,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
    ) -> None:
        """`client` (a boto3 S3 client) replaces the one built from the other arguments."""
        if not bucket:
            raise ValueError("an S3 bucket name is required")
        if multipart_threshold < MIN_PART_SIZE:
            raise ValueError(f"multipart_threshold must be at least {MIN_PART_SIZE} bytes")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.multipart_threshold = multipart_threshold
        self._client = client or boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=s3_client_config(
                max_attempts=max_attempts,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
            ),
        )
        self.endpoint_url: str = self._client.meta.endpoint_url

    def __repr__(self) -> str:
        return f"S3BlobStore({self._location!r}, endpoint_url={self.endpoint_url!r})"

    @property
    def _location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _name(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Translate botocore failures into our two exception types, naming endpoint and bucket."""
        try:
            yield
        except ClientError as exc:
            code = _error_code(exc)
            if key is not None and code in _NOT_FOUND_CODES:
                raise BlobNotFoundError(f"blob {key} not found in {self._location}") from exc
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = exc.response.get("Error", {}).get("Message", "")
            raise StorageError(
                f"S3 endpoint {self.endpoint_url} refused the request on {self._location} "
                f"(HTTP {status} {code}: {message})"
            ) from exc
        except (BotoConnectionError, HTTPClientError) as exc:
            raise StorageError(f"S3 endpoint {self.endpoint_url} unreachable: {exc}") from exc
        except NoCredentialsError as exc:
            raise StorageError(
                f"no AWS credentials for S3 endpoint {self.endpoint_url}: set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 request to {self.endpoint_url} failed: {exc}") from exc

    def put_stream(self, key: str, stream: BinaryIO, *, sha256: str, size: int) -> None:
        name = self._name(key)
        if size <= self.multipart_threshold:
            data = b"".join(read_exactly(stream, size, self.multipart_threshold))
            check_sha256(hashlib.sha256(data).hexdigest(), sha256)
            with self._errors():
                self._client.put_object(
                    Bucket=self.bucket, Key=name, Body=data, ChecksumSHA256=_b64_sha256(data)
                )
        else:
            self._put_multipart(name, stream, sha256=sha256, size=size)

    def _put_multipart(self, name: str, stream: BinaryIO, *, sha256: str, size: int) -> None:
        """Upload part by part, each with its own sha256; complete only if the whole matches."""
        with self._errors():
            upload_id = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=name, ChecksumAlgorithm="SHA256"
            )["UploadId"]
        try:
            digest = hashlib.sha256()
            parts = []
            for number, part in enumerate(
                read_exactly(stream, size, self.multipart_threshold), start=1
            ):
                digest.update(part)
                checksum = _b64_sha256(part)
                with self._errors():
                    etag = self._client.upload_part(
                        Bucket=self.bucket,
                        Key=name,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=part,
                        ChecksumSHA256=checksum,
                    )["ETag"]
                parts.append({"PartNumber": number, "ETag": etag, "ChecksumSHA256": checksum})
            check_sha256(digest.hexdigest(), sha256)
            with self._errors():
                self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            with contextlib.suppress(BotoCoreError, ClientError):
                self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=name, UploadId=upload_id
                )
            raise

    def open(self, key: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        validate_range(start, end)
        name = self._name(key)
        if end == start:  # an empty range cannot be expressed as a Range header
            self.size(key)
            return iter(())
        byte_range = f"bytes={start}-{'' if end is None else end - 1}"
        with self._errors(key):
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=name, Range=byte_range)
            except ClientError as exc:
                if _error_code(exc) not in _UNSATISFIABLE_RANGE_CODES:
                    raise
                return iter(())  # the range starts at or past the end of an existing blob
        return self._stream(response["Body"])

    def _stream(self, body: Any) -> Iterator[bytes]:
        """Yield the response body; a connection lost mid-way becomes StorageError."""
        with contextlib.closing(body), self._errors():
            yield from body.iter_chunks(_READ_CHUNK)

    def size(self, key: str) -> int:
        with self._errors(key):
            head = self._client.head_object(Bucket=self.bucket, Key=self._name(key))
        return int(head["ContentLength"])

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except BlobNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        with self._errors():
            self._client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def keys(self) -> Iterator[str]:
        """List only this prefix's level: stores under other prefixes are never seen."""
        list_prefix = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=list_prefix, Delimiter="/"):
                for item in page.get("Contents", []):
                    name = item["Key"][len(list_prefix) :]
                    if is_valid_key(name):
                        yield name


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
