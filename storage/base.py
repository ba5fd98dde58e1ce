"""The one interface every blob backend implements, and the checks every backend applies.

Blobs are immutable and content-addressed: the key is the sha256 hex digest of the bytes, so a
retried or repeated put of the same content is harmless. Keys are exactly 64 lowercase hex
characters; anything else is refused before it reaches a path or an object name.
"""

from __future__ import annotations

import abc
import os
import re
from collections.abc import Iterator
from typing import BinaryIO

_KEY_PATTERN = re.compile(r"[0-9a-f]{64}")


class StorageError(Exception):
    """The backend could not be reached or refused an operation (maps to HTTP 503)."""


class BlobNotFoundError(StorageError):
    """The key does not exist in the store (maps to HTTP 404)."""


def is_valid_key(key: str) -> bool:
    """True for a sha256 hex digest: 64 characters from 0-9a-f, nothing else."""
    return isinstance(key, str) and _KEY_PATTERN.fullmatch(key) is not None


def validate_key(key: str) -> str:
    """Return `key` unchanged, or raise ValueError, so no key can carry a path or a prefix trick."""
    if not is_valid_key(key):
        raise ValueError(f"invalid blob key {key!r}: expected 64 lowercase hex characters (sha256)")
    return key


def validate_range(start: int, end: int | None) -> None:
    """Refuse ranges that mean nothing; a range past the end of a blob is fine (it is clipped)."""
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid byte range start={start} end={end}")


def read_exactly(stream: BinaryIO, size: int, chunk_size: int) -> Iterator[bytes]:
    """Yield `size` bytes from `stream` in chunks of exactly `chunk_size` (the last may be shorter).

    Short reads are filled up, so callers may rely on the chunk size (S3 parts must be >= 5 MiB).
    Raises StorageError when the stream ends early, so a truncated upload is never stored.
    """
    done = 0
    while done < size:
        chunk = bytearray()
        wanted = min(chunk_size, size - done)
        while len(chunk) < wanted:
            data = stream.read(wanted - len(chunk))
            if not data:
                raise StorageError(f"stream ended after {done + len(chunk)} of {size} bytes")
            chunk += data
        done += wanted
        yield bytes(chunk)


def check_sha256(actual: str, expected: str) -> None:
    """Raise StorageError when the hex digest of the received bytes is not the one promised."""
    if actual != expected:
        raise StorageError(f"sha256 mismatch: expected {expected}, received bytes hash to {actual}")


class BlobStore(abc.ABC):
    """Put, get, range-get, test, delete and list immutable blobs by key.

    Every method raises ValueError for an invalid key, BlobNotFoundError for a missing one and
    StorageError when the backend fails; a failed or refused put leaves nothing behind.
    """

    def put_file(self, key: str, path: str | os.PathLike[str], *, sha256: str) -> None:
        """Store the file at `path` under `key`; `sha256` (hex) is verified by the backend."""
        with open(path, "rb") as file:
            self.put_stream(key, file, sha256=sha256, size=os.fstat(file.fileno()).st_size)

    @abc.abstractmethod
    def put_stream(self, key: str, stream: BinaryIO, *, sha256: str, size: int) -> None:
        """Store exactly `size` bytes read from `stream` under `key`.

        The blob becomes visible only once all bytes arrived and hash to `sha256`; a mismatch or
        a short stream raises StorageError and stores nothing.
        """

    @abc.abstractmethod
    def open(self, key: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the bytes of `key` from `start` up to `end` (exclusive; None = to the end).

        The key is looked up when `open` is called, not on the first iteration, so
        BlobNotFoundError arrives before any byte is sent on. A range past the end is clipped.
        """

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """Size in bytes; raises BlobNotFoundError when absent."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """True when the key is stored."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the key; deleting an absent key is not an error."""

    @abc.abstractmethod
    def keys(self) -> Iterator[str]:
        """Every stored key, in no particular order; names that are not valid keys are skipped."""

    def abandoned_writes(self) -> list[str]:
        """What puts that never finished left behind (their process was killed), by name.

        Invisible to `keys` and reads; `compeft-hub fsck --repair` removes them. None by default.
        """
        return []

    def remove_abandoned_write(self, name: str) -> None:
        """Remove one leftover named by `abandoned_writes`; only while no put is running."""
        raise ValueError(f"{name!r} is not a leftover of an unfinished put in {self!r}")

    def get_bytes(self, key: str) -> bytes:
        """The whole blob in memory (blobs are small: compressed experts)."""
        return b"".join(self.open(key))
