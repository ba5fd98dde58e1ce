"""Download one blob into the cache: resumable, bounded, verified, atomic.

Bytes go to `<sha256>.incomplete`; an interrupted transfer (this run's retry, or a later run)
continues from that file with `Range: bytes=<size>-`. The answer is checked: 206 must carry the
Content-Range asked for; a 200 means the server ignored Range, so the partial file is discarded and
the whole blob written. The file is hashed as it grows, never trusted by size (huggingface_hub
checks only sizes), and renamed to `<sha256>` only when the sha256 matches. A mismatch discards
the bytes and downloads once more from scratch; a second mismatch raises ChecksumMismatchError.

Sizes are the hub's word, so they are bounded too: an announced size above the client's
`max_blob_bytes` is refused before any request, an answer whose Content-Length exceeds what is
left to download before its body is read, and a body running past the announced size at the first
byte too many. Each raises LimitExceededError and discards the partial file: bytes from a hub
that lies about sizes are not worth resuming.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from tqdm import tqdm

from registry.client.cache import BlobCache, file_sha256
from registry.client.errors import (
    ChecksumMismatchError,
    HubError,
    LimitExceededError,
    ServerUnavailableError,
)
from registry.client.http import HubHttp

logger = logging.getLogger(__name__)
_FULL_DOWNLOADS = 2  # the first, and one more after a sha256 mismatch


def download_blob(
    http: HubHttp, cache: BlobCache, url_path: str, *, sha256: str, size: int, progress: tqdm
) -> Path:
    """The verified cached blob, downloaded from `url_path` unless another process just did."""
    limit = http.limits.max_blob_bytes
    if not 0 <= size <= limit:
        raise LimitExceededError(
            f"{http.endpoint}{url_path}: the hub announces a blob of {size} "
            f"bytes; this client downloads 0 to {limit} "
            "(COMPEFT_HUB_MAX_BLOB_BYTES)"
        )
    with cache.lock(sha256):
        cached = cache.verified_blob(sha256)
        if cached is not None:
            return cached
        partial = cache.partial_path(sha256)
        for _ in range(_FULL_DOWNLOADS):
            try:
                digest = http.retrying(idempotent=True)(
                    _continue_download, http, url_path, partial, size=size, progress=progress
                )
            except LimitExceededError:
                partial.unlink(missing_ok=True)
                raise
            if digest == sha256:
                final = cache.blob_path(sha256)
                os.replace(partial, final)
                return final
            logger.warning(
                "download of %s has sha256 %s, expected %s; discarded", url_path, digest, sha256
            )
            partial.unlink(missing_ok=True)
    raise ChecksumMismatchError(
        f"{http.endpoint}{url_path}: the downloaded blob's sha256 differed from the announced "
        f"{sha256} on {_FULL_DOWNLOADS} downloads in a row; the hub's copy may be corrupted "
        "(an operator can run `compeft-hub fsck`)"
    )


def _continue_download(
    http: HubHttp, url_path: str, partial: Path, *, size: int, progress: tqdm
) -> str:
    """One request for the bytes `partial` lacks; the sha256 hex digest of the whole file.

    Run under `http.retrying`: a transfer cut short leaves its bytes in `partial` for the next try.
    """
    offset = partial.stat().st_size if partial.exists() else 0
    if offset > size:  # cannot be a prefix of this blob
        partial.unlink()
        offset = 0
    if offset == size:  # complete, only the rename was missing
        return file_sha256(partial).hexdigest()
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with http.stream(url_path, headers=headers) as response:
        if offset and response.status_code == 206:
            expected_range = f"bytes {offset}-{size - 1}/{size}"
            if response.headers.get("Content-Range") != expected_range:
                raise HubError(
                    f"{url_path}: asked for {expected_range}, the hub answered "
                    f"Content-Range {response.headers.get('Content-Range')!r}"
                )
        else:
            offset = 0
        declared = response.headers.get("Content-Length")
        if declared is not None and int(declared) > size - offset:
            raise LimitExceededError(
                f"{url_path}: the hub answers Content-Length {declared}, more "
                f"than the {size - offset} bytes left of the announced {size}"
            )
        digest = file_sha256(partial) if offset else hashlib.sha256()
        progress.reset(total=size)
        progress.update(offset)
        with partial.open("ab" if offset else "wb") as out:
            for chunk in response.iter_raw():  # as received: a cut loses nothing buffered
                if out.tell() + len(chunk) > size:
                    raise LimitExceededError(
                        f"{url_path}: the hub sent more than the announced {size} bytes"
                    )
                out.write(chunk)
                digest.update(chunk)
                progress.update(len(chunk))
            received = out.tell()
    if received != size:
        raise ServerUnavailableError(
            f"{url_path}: the transfer stopped at {received} of {size} bytes"
        )
    return digest.hexdigest()
