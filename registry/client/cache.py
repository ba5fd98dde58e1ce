"""The download cache, laid out like Hugging Face's, but verified on every read.

    <root>/blobs/<sha256>                  a complete blob, named by the sha256 of its bytes
    <root>/blobs/<sha256>.incomplete       a partial download, resumed with HTTP Range
    <root>/blobs/<sha256>.lock             held while one process downloads that blob
    <root>/refs/<owner>/<name>/<revision>  the revision's metadata (JSON) as last resolved;
                                           `latest` and the revision number both get one

Guarantees: a file under `blobs/<sha256>` only ever appears whole (temp file + os.replace); a blob
is hashed whenever it is handed out, and one whose bytes do not match its name is deleted, never
returned. Names come from the server, so a sha256 that is not 64 hex digits is refused before it
becomes a path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path

from filelock import FileLock
from pydantic import ValidationError

from registry.client.errors import HubError
from registry.client.refs import ExpertRef
from registry.wire.experts import RevisionDetail

logger = logging.getLogger(__name__)
_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)


def file_sha256(path: Path) -> hashlib._Hash:
    """The running sha256 of a file's bytes, ready to be updated with what follows them."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256")


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never a torn write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)


class BlobCache:
    """Blobs keyed by sha256 and resolved revisions under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser()

    def blob_path(self, sha256: str) -> Path:
        """Where the blob lives once complete (whether or not it is there)."""
        if _SHA256.fullmatch(sha256) is None:
            raise HubError(f"the hub announced an invalid sha256 {sha256!r}")
        return self.root / "blobs" / sha256

    def partial_path(self, sha256: str) -> Path:
        return self.blob_path(sha256).with_suffix(".incomplete")

    def lock(self, sha256: str) -> FileLock:
        """An inter-process lock for downloading this blob (two writers would mix bytes)."""
        path = self.blob_path(sha256).with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(path)

    def verified_blob(self, sha256: str) -> Path | None:
        """The blob's path if it is cached and its bytes hash to `sha256`; None otherwise."""
        path = self.blob_path(sha256)
        if not path.is_file():
            return None
        if file_sha256(path).hexdigest() == sha256:
            return path
        self._discard_corrupted(path)
        return None

    def read_verified(self, sha256: str) -> bytes | None:
        """The blob's bytes if cached and intact: the bytes hashed are the bytes returned."""
        path = self.blob_path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() == sha256:
            return data
        self._discard_corrupted(path)
        return None

    def _discard_corrupted(self, path: Path) -> None:
        logger.warning(
            "cached blob %s is corrupted (its sha256 differs from its name); "
            "deleted, it will be downloaded again",
            path,
        )
        path.unlink(missing_ok=True)

    def _ref_path(self, ref: ExpertRef) -> Path:
        return self.root / "refs" / ref.owner / ref.name / ref.revision

    def write_ref(self, ref: ExpertRef, revision: RevisionDetail) -> None:
        """Remember what `ref` resolved to, under its own name and under the revision number."""
        data = revision.model_dump_json().encode()
        for name in {ref, ref.at(revision.revision)}:
            write_atomically(self._ref_path(name), data)

    def read_ref(self, ref: ExpertRef) -> RevisionDetail | None:
        """What `ref` resolved to when last online; None if never resolved (or unreadable)."""
        try:
            return RevisionDetail.model_validate_json(self._ref_path(ref).read_bytes())
        except (FileNotFoundError, ValidationError):
            return None
