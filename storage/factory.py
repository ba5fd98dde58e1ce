"""Choose a blob backend from a URL, MLflow style.

- `/abs/path`, `relative/path` or `file:///abs/path` → LocalBlobStore
- `s3://bucket/optional/prefix?endpoint_url=http://127.0.0.1:8333&region=us-east-1` → S3BlobStore;
  without `endpoint_url`, boto3 reads AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, then uses AWS.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from storage.base import BlobStore
from storage.local import LocalBlobStore
from storage.s3 import S3BlobStore

_S3_OPTIONS = ("endpoint_url", "region")


def _open_local(url: SplitResult) -> BlobStore:
    if url.netloc not in ("", "localhost") or url.query:
        raise ValueError(f"expected file:///absolute/path, got {url.geturl()!r}")
    return LocalBlobStore(Path(unquote(url.path)))


def _open_s3(url: SplitResult) -> BlobStore:
    if not url.netloc:
        raise ValueError(f"S3 URL without a bucket: {url.geturl()}")
    options = parse_qs(url.query, keep_blank_values=True, strict_parsing=bool(url.query))
    unknown = sorted(set(options) - set(_S3_OPTIONS))
    if unknown:
        raise ValueError(f"unknown S3 URL options {unknown}; supported: {list(_S3_OPTIONS)}")
    single = {name: values[-1] or None for name, values in options.items()}
    return S3BlobStore(url.netloc, unquote(url.path), **single)


_OPENERS: dict[str, Callable[[SplitResult], BlobStore]] = {"file": _open_local, "s3": _open_s3}


def open_blob_store(url: str) -> BlobStore:
    """The backend named by `url`; raises ValueError for an unknown scheme or a malformed URL."""
    if not url:
        raise ValueError("empty blob store URL")
    parts = urlsplit(url)
    if parts.scheme == "":
        return LocalBlobStore(Path(url))
    opener = _OPENERS.get(parts.scheme)
    if opener is None:
        raise ValueError(
            f"unsupported blob store URL scheme {parts.scheme!r} in {url!r}; supported: "
            f"{', '.join(f'{scheme}://' for scheme in _OPENERS)} or a plain path"
        )
    return opener(parts)
