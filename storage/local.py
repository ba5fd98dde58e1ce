"""Blobs as files in a local folder: the embedded default.

Layout: `<root>/ab/cd/abcd...` (two levels of two hex characters), so no folder grows past 256
entries per level. A blob is written to a temporary file in its final folder, hashed while it is
written, fsynced and renamed into place, so readers see either the whole blob or nothing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

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

_CHUNK = 1024 * 1024
_TEMP_PREFIX = ".tmp-"


class LocalBlobStore(BlobStore):
    """A folder of content-addressed blobs; the folder is created on the first put."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        validate_key(key)
        return self.root / key[:2] / key[2:4] / key

    def put_stream(self, key: str, stream: BinaryIO, *, sha256: str, size: int) -> None:
        """Write atomically: temp file in the same folder, verify sha256, fsync, rename, fsync dir."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                dir=path.parent, prefix=_TEMP_PREFIX, delete=False
            ) as tmp:
                try:
                    digest = hashlib.sha256()
                    for chunk in read_exactly(stream, size, _CHUNK):
                        digest.update(chunk)
                        tmp.write(chunk)
                    check_sha256(digest.hexdigest(), sha256)
                    tmp.flush()
                    os.fsync(tmp.fileno())
                except BaseException:
                    os.unlink(tmp.name)
                    raise
            os.replace(tmp.name, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            raise StorageError(f"cannot write blob {key} under {self.root}: {exc}") from exc

    def open(self, key: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        validate_range(start, end)
        try:
            file = self._path(key).open("rb")
        except FileNotFoundError as exc:
            raise BlobNotFoundError(f"blob {key} not found in {self.root}") from exc
        except OSError as exc:
            raise StorageError(f"cannot read blob {key} under {self.root}: {exc}") from exc
        return _read_range(file, start, end)

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise BlobNotFoundError(f"blob {key} not found in {self.root}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        """Walk the shard folders; temporary files of puts in progress are never listed."""
        for path in self.root.glob("??/??/*"):
            if is_valid_key(path.name) and path == self._path(path.name):
                yield path.name

    def abandoned_writes(self) -> list[str]:
        """Temporary files of puts whose process died before the rename, relative to the root."""
        return sorted(
            path.relative_to(self.root).as_posix()
            for path in self.root.glob(f"??/??/{_TEMP_PREFIX}*")
        )

    def remove_abandoned_write(self, name: str) -> None:
        if name not in self.abandoned_writes():  # never a path the caller made up
            super().remove_abandoned_write(name)
        (self.root / name).unlink(missing_ok=True)


def _read_range(file: BinaryIO, start: int, end: int | None) -> Iterator[bytes]:
    """Yield bytes start..end of an open file, closing it however the iteration ends."""
    with file:
        file.seek(start)
        remaining = None if end is None else end - start
        while remaining is None or remaining > 0:
            chunk = file.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX: a directory entry lives in the directory)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
