"""Receive an upload's multipart body into files of a temporary folder, under size limits.

FastAPI has no upload size cap (fastapi #362) and parses the whole body before the route runs, so
the upload route reads the raw stream itself: the token is checked before any byte is read, a
Content-Length over the limit is refused at once, streamed bytes are counted (chunked bodies have
no Content-Length), and each part goes straight to its own file whatever its `filename`. Pickle
parts are refused as soon as their headers arrive, before their bytes are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from compeft_core.formats import PICKLE_REFUSED
from registry.errors import InvalidRequestError, PayloadTooLargeError
from registry.services.ingest import ReceivedUpload
from registry.wire.experts import CONFIG_PART, METADATA_PART, MODEL_CARD_PART, WEIGHTS_PART

EXPECTED_PARTS = (CONFIG_PART, WEIGHTS_PART, METADATA_PART)
OPTIONAL_PARTS = (MODEL_CARD_PART,)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass(frozen=True)
class UploadLimits:
    """Byte limits: the whole body, and the small parts."""

    max_body_bytes: int
    max_config_bytes: int
    max_metadata_bytes: int
    max_model_card_bytes: int

    def for_part(self, name: str) -> int:
        """The most bytes part `name` may have."""
        return {
            CONFIG_PART: self.max_config_bytes,
            METADATA_PART: self.max_metadata_bytes,
            MODEL_CARD_PART: self.max_model_card_bytes,
        }.get(name, self.max_body_bytes)


@dataclass
class _PartWriter:
    """python-multipart callbacks that route each part to a file named after the part."""

    folder: Path
    limits: UploadLimits
    paths: dict[str, Path] = field(default_factory=dict)
    finished: bool = False
    _header_name: bytes = b""
    _header_value: bytes = b""
    _disposition: bytes = b""
    _part: str | None = None
    _part_size: int = 0
    _file: BinaryIO | None = None

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", errors="replace")
        filename = options.get(b"filename", b"").decode("utf-8", errors="replace").lower()
        if name.lower().endswith(PICKLE_SUFFIXES) or filename.endswith(PICKLE_SUFFIXES):
            raise InvalidRequestError(PICKLE_REFUSED)
        if name not in EXPECTED_PARTS + OPTIONAL_PARTS:
            raise InvalidRequestError(
                f"unexpected part {name!r}; send exactly {', '.join(EXPECTED_PARTS)}, and "
                f"optionally {', '.join(OPTIONAL_PARTS)}"
            )
        if name in self.paths:
            raise InvalidRequestError(f"part {name!r} was sent twice")
        self._part, self._part_size = name, 0
        self.paths[name] = self.folder / name
        self._file = self.paths[name].open("wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        assert self._file is not None and self._part is not None
        self._part_size += end - start
        if self._part_size > self.limits.for_part(self._part):
            raise PayloadTooLargeError(
                f"part {self._part!r} exceeds {self.limits.for_part(self._part)} bytes"
            )
        self._file.write(data[start:end])

    def on_part_end(self) -> None:
        self.close()
        self._part = None

    def on_end(self) -> None:
        self.finished = True

    def close(self) -> None:
        """Close the file of the part being written, if any (safe to call twice)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _boundary(request: Request) -> bytes:
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise InvalidRequestError(
            "send the upload as multipart/form-data with the parts " + ", ".join(EXPECTED_PARTS)
        )
    return options[b"boundary"]


def _check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not (declared.isascii() and declared.isdigit()):  # "²".isdigit(), int("²") fails
        raise InvalidRequestError(f"invalid Content-Length {declared[:40]!r}")
    digits = declared.lstrip("0") or "0"  # int() refuses more than 4300 digits
    if len(digits) > len(str(limit)) or int(digits) > limit:
        raise PayloadTooLargeError(f"upload of {declared} bytes exceeds the limit of {limit} bytes")


async def receive_upload(request: Request, folder: Path, limits: UploadLimits) -> ReceivedUpload:
    """Stream the body into `folder`; raise InvalidRequestError or PayloadTooLargeError.

    On return every expected part is complete on disk. On error, files may remain in `folder`:
    the caller owns it and removes it.
    """
    _check_declared_length(request, limits.max_body_bytes)
    writer = _PartWriter(folder, limits)
    parser = MultipartParser(_boundary(request), writer.callbacks())  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limits.max_body_bytes:
                raise PayloadTooLargeError(
                    f"upload exceeds the limit of {limits.max_body_bytes} bytes"
                )
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidRequestError(f"malformed multipart body: {exc}") from exc
    finally:
        writer.close()
    if not writer.finished:
        raise InvalidRequestError("the multipart body ended before its closing boundary")
    missing = [part for part in EXPECTED_PARTS if part not in writer.paths]
    if missing:
        raise InvalidRequestError(
            f"missing part(s) {', '.join(missing)}; send {', '.join(EXPECTED_PARTS)}"
        )
    return ReceivedUpload(
        config_path=writer.paths[CONFIG_PART],
        weights_path=writer.paths[WEIGHTS_PART],
        metadata_path=writer.paths[METADATA_PART],
        model_card_path=writer.paths.get(MODEL_CARD_PART),
    )
