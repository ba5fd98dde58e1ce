"""Serve a revision's blob over HTTP: ETag = sha256, If-None-Match, one Range (with If-Range)
for resuming, HEAD for its size and ETag without the bytes.

A numbered revision's blob never changes (numbers of a name are never reused), so its answers are
cacheable forever (`immutable`). `latest` changes with the next upload: it is a redirect, never
cached, to the numbered URL. Only single byte ranges are served. A Range header that is
malformed, names several ranges or selects no byte of the blob answers 416 with
`Content-Range: bytes */<size>`, never a 500. An If-Range that does not name the current ETag
(a date, or another entity tag) means the client's partial copy is of other bytes: the whole
blob is sent (RFC 9110 13.1.5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import Response
from fastapi.responses import RedirectResponse, StreamingResponse

from registry.db.models import Revision
from registry.errors import NotFoundError, RangeNotSatisfiableError
from storage import BlobStore

_SINGLE_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})", re.ASCII)
RANGE_HELP = "use one range: bytes=FIRST-LAST, bytes=FIRST- or bytes=-SUFFIX_LENGTH"


@dataclass(frozen=True)
class ByteRange:
    """Bytes `start` up to `end` (exclusive) of a blob of `size` bytes."""

    start: int
    end: int
    size: int

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end - 1}/{self.size}"


def parse_range(header: str, size: int) -> ByteRange:
    """The one range `header` selects in a `size`-byte blob; RangeNotSatisfiableError if none."""
    match = _SINGLE_RANGE.fullmatch(header.strip())
    if match is None or match.groups() == ("", ""):
        raise RangeNotSatisfiableError(f"unsupported Range {header!r}; {RANGE_HELP}", size=size)
    first, last = match.groups()
    if first == "":
        start, end = size - min(int(last), size), size
    else:
        start = int(first)
        end = size if last == "" else min(int(last) + 1, size)
        if last != "" and int(last) < start:
            raise RangeNotSatisfiableError(f"Range {header!r} ends before it starts", size=size)
    if start >= end:
        raise RangeNotSatisfiableError(
            f"Range {header!r} selects no byte of this {size}-byte blob", size=size
        )
    return ByteRange(start, end, size)


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison of an If-None-Match list with our (strong) ETag."""
    candidates = (candidate.strip().removeprefix("W/") for candidate in if_none_match.split(","))
    return any(candidate in ("*", etag) for candidate in candidates)


@dataclass(frozen=True)
class BlobRequest:
    """What the client asked of a blob: HEAD or GET, and its conditional and Range headers."""

    head: bool = False
    range_header: str | None = None
    if_range: str | None = None
    if_none_match: str | None = None


def pinned_blob_redirect(pinned_path: str) -> Response:
    """Where `latest/blob` currently points: 307 (keeps HEAD a HEAD), never cached."""
    return RedirectResponse(pinned_path, status_code=307, headers={"Cache-Control": "no-cache"})


def blob_response(store: BlobStore, revision: Revision, asked: BlobRequest) -> Response:
    """200 with the whole blob, 206 with one range, or 304 when the client already has it."""
    if revision.blob_missing:
        raise NotFoundError(
            f"the blob of revision {revision.revision} is missing from storage (found by "
            "`compeft-hub fsck`); the owner must upload the adapter again"
        )
    etag = f'"{revision.blob_sha256}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "public, max-age=31536000, immutable",
    }
    if asked.if_none_match is not None and etag_matches(asked.if_none_match, etag):
        return Response(status_code=304, headers=headers)
    size = revision.blob_bytes
    range_header = asked.range_header
    if asked.if_range is not None and asked.if_range.strip() != etag:  # strong comparison
        range_header = None
    selected = ByteRange(0, size, size) if range_header is None else parse_range(range_header, size)
    headers["Content-Length"] = str(selected.end - selected.start)
    headers["Content-Disposition"] = (
        f'attachment; filename="{revision.expert.owner.name}--{revision.expert.name}'
        f'--r{revision.revision}.compeft"'
    )
    status = 200
    if range_header is not None:
        headers["Content-Range"] = selected.content_range
        status = 206
    if asked.head:
        store.size(revision.blob_sha256)  # BlobNotFoundError (404) exactly as a GET would
        return Response(status_code=status, media_type="application/octet-stream", headers=headers)
    chunks = store.open(revision.blob_sha256, start=selected.start, end=selected.end)
    return StreamingResponse(
        chunks, status_code=status, media_type="application/octet-stream", headers=headers
    )
