"""Fuzz the upload parser: any body, boundary, Content-Type or Content-Length gives a clean refusal.

`registry.api.upload_parts.receive_upload` is driven directly (no server, thousands of bodies a
minute) with multipart bodies built from generated parts and then damaged: bytes deleted,
inserted or flipped, boundaries and headers mangled, the stream cut into arbitrary chunks. The
only outcomes allowed are the three complete parts on disk within their limits, or
InvalidRequestError / PayloadTooLargeError (400 / 413). A smaller run posts the same bodies to
the app, which must answer 4xx (or 422 when the parts are well-formed but their content is not).
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from registry.api.upload_parts import EXPECTED_PARTS, UploadLimits, receive_upload
from registry.errors import InvalidRequestError, PayloadTooLargeError
from registry.wire.experts import CONFIG_PART, METADATA_PART
from tests.fixtures.registry import Hub, auth

LIMITS = UploadLimits(
    max_body_bytes=4096, max_config_bytes=512, max_metadata_bytes=256, max_model_card_bytes=256
)
CRLF = b"\r\n"

boundaries = st.one_of(
    st.binary(min_size=1, max_size=80),
    st.text("abcXYZ0123456789'()+_,-./:=? ", min_size=1, max_size=70).map(str.encode),
)
part_names = st.one_of(
    st.sampled_from([*EXPECTED_PARTS, "adapter_model.bin", "model.pt", "", "metadata\x00"]),
    st.text(max_size=30),
)


@st.composite
def dispositions(draw: st.DrawFn) -> bytes:
    """A Content-Disposition header line, well-formed or not."""
    name = draw(part_names).encode("utf-8", "surrogatepass")
    quoted = draw(st.booleans())
    value = b'"' + name + b'"' if quoted else name
    filename = draw(st.one_of(st.none(), part_names.map(lambda n: n.encode("utf-8", "replace"))))
    line = b"Content-Disposition: form-data; name=" + value
    if filename is not None:
        line += b'; filename="' + filename + b'"'
    return draw(st.sampled_from([line, line.lower(), line.replace(b": ", b":"), b"X-" + line]))


@st.composite
def parts(draw: st.DrawFn) -> bytes:
    headers = [draw(dispositions())]
    headers += draw(st.lists(st.binary(max_size=40).map(lambda h: b"X-Junk: " + h), max_size=3))
    if draw(st.booleans()):
        headers.append(b"Content-Type: " + draw(st.binary(max_size=30)))
    body = draw(st.binary(max_size=600))
    return CRLF.join(headers) + CRLF + CRLF + body


@dataclass(frozen=True)
class Damage:
    """One edit of the body: delete `length` bytes at `at`, then insert `insert` there."""

    at: float
    length: int
    insert: bytes

    def apply(self, body: bytes) -> bytes:
        position = int(self.at * len(body))
        return body[:position] + self.insert + body[position + self.length :]


damages = st.builds(
    Damage,
    at=st.floats(0, 1),
    length=st.integers(0, 8),
    insert=st.one_of(st.binary(max_size=8), st.sampled_from([b"--", CRLF, b"\r", b"\n", b"\x00"])),
)


@st.composite
def multipart_requests(draw: st.DrawFn) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """(headers, body chunks) of a multipart upload, damaged in generated ways."""
    boundary = draw(boundaries)
    delimiter = b"--" + boundary
    body = b"".join(delimiter + CRLF + part + CRLF for part in draw(st.lists(parts(), max_size=5)))
    body += draw(st.sampled_from([delimiter + b"--" + CRLF, delimiter + b"--", delimiter, b""]))
    for damage in draw(st.lists(damages, max_size=4)):
        body = damage.apply(body)
    content_type = draw(
        st.one_of(
            st.just(b"multipart/form-data; boundary=" + boundary),
            st.just(b'multipart/form-data; boundary="' + boundary + b'"'),
            st.sampled_from([b"multipart/form-data", b"application/json", b"text/plain", b""]),
            st.binary(max_size=60),
        )
    )
    headers = [(b"content-type", content_type)]
    length = draw(
        st.one_of(
            st.none(),
            st.just(str(len(body)).encode()),
            st.integers(-(2**70), 2**70).map(lambda n: str(n).encode()),
            st.binary(min_size=1, max_size=12),
            st.sampled_from(
                [b"\xb2", b"\xb9\xb3", b"1" * 5000, b"0" * 5000 + b"1", b" 12", b"1e3"]
            ),
        )
    )
    if length is not None:
        headers.append((b"content-length", length))
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=6)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    return headers, chunks


def parse(headers: list[tuple[bytes, bytes]], chunks: list[bytes], folder: Path) -> object:
    """Run the parser on one request; return what it returned or raised."""
    pending = list(chunks)

    async def receive() -> dict[str, object]:
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}
    try:
        return asyncio.run(receive_upload(Request(scope, receive), folder, LIMITS))
    except (InvalidRequestError, PayloadTooLargeError) as refusal:
        return refusal


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=multipart_requests())
def test_any_body_is_parsed_whole_or_refused_cleanly(
    request: tuple[list[tuple[bytes, bytes]], list[bytes]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        outcome = parse(*request, Path(folder))
        if isinstance(outcome, InvalidRequestError | PayloadTooLargeError):
            return
        sizes = {name: (Path(folder) / name).stat().st_size for name in EXPECTED_PARTS}
        assert sizes[CONFIG_PART] <= LIMITS.max_config_bytes
        assert sizes[METADATA_PART] <= LIMITS.max_metadata_bytes
        assert sum(sizes.values()) <= LIMITS.max_body_bytes


@pytest.fixture
def blob_store_url(tmp_path: Path) -> str:
    return (tmp_path / "blobs").as_uri()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(request=multipart_requests())
def test_the_app_answers_fuzzed_uploads_with_4xx(
    hub: Hub, request: tuple[list[tuple[bytes, bytes]], list[bytes]]
) -> None:
    headers, chunks = request
    response = hub.client.post(
        "/api/v1/experts/alice/fuzzed/revisions",
        content=b"".join(chunks),
        headers=[
            (name.encode(), value.encode()) for name, value in auth(hub.token("alice")).items()
        ]
        + headers,
    )
    assert 400 <= response.status_code < 500, response.text
