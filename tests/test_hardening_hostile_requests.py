"""Hand-written hostile requests, beyond tests/test_registry_hostile_uploads.py: each one answers
4xx with a message that says what was wrong, and stores nothing it should not.

Families: multipart bodies written byte by byte (many tiny parts, header bombs, duplicate or
renamed parts, wrong content types, absurd Content-Length), metadata that is huge or nested a
hundred thousand levels deep, Unicode tricks in ids and tags (bidi overrides, zero-width
characters, homoglyphs, NUL), SQL-looking strings, Range headers that are negative, overflowing
or several, revision references and page sizes out of range, odd Authorization headers, and a body
trickled byte by byte or abandoned half way over a real socket.
"""

from __future__ import annotations

import json
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import torch
from sqlalchemy import func, select

from bench.adapter_files import DEFAULT_METADATA, lora_adapter
from bench.api_process import upload_form
from compeft_core import BlobFormatError, CompressedExpert
from compeft_core.compress import compress
from registry.api.app import create_app
from registry.db.models import ApiToken, Expert, Revision, RevisionTag, User
from tests.fixtures.registry import Hub, auth, served_over_http
from tests.test_blob_format import _rewrite
from tests.test_registry_hostile_uploads import assert_nothing_stored

pytestmark = pytest.mark.usefixtures("no_leftover_upload_files")

VALID = lora_adapter()
UPLOAD = "/api/v1/experts/alice/victim/revisions"
BOUNDARY = b"hostile-boundary"


@pytest.fixture
def blob_store_url(tmp_path: Path) -> str:
    """Refused requests fail before any blob is written: the local folder is enough."""
    return (tmp_path / "blobs").as_uri()


@pytest.fixture
def alice(hub: Hub) -> str:
    return hub.token("alice")


def part(name: bytes, body: bytes, *headers: bytes, filename: bytes | None = b"f") -> bytes:
    """One multipart part: Content-Disposition (+ `headers`), a blank line, the body."""
    disposition = b'Content-Disposition: form-data; name="' + name + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    return b"\r\n".join([disposition, *headers]) + b"\r\n\r\n" + body


def multipart(*parts: bytes, boundary: bytes = BOUNDARY) -> bytes:
    delimiter = b"--" + boundary
    return b"".join(delimiter + b"\r\n" + p + b"\r\n" for p in parts) + delimiter + b"--\r\n"


CONFIG = part(b"adapter_config.json", VALID.config)
WEIGHTS = part(b"adapter_model.safetensors", VALID.weights)
METADATA = part(b"metadata", json.dumps(DEFAULT_METADATA).encode(), filename=None)
FORM_DATA = "multipart/form-data; boundary=" + BOUNDARY.decode()


@dataclass(frozen=True)
class RawUpload:
    """A hand-made upload request and the answer it must get."""

    body: bytes
    status: int
    message: str
    content_type: str | None = FORM_DATA
    headers: dict[str, str] = field(default_factory=dict)


def metadata_part(text: str | bytes) -> bytes:
    return part(b"metadata", text.encode() if isinstance(text, str) else text, filename=None)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


RAW_UPLOADS = {
    "ten_thousand_tiny_unexpected_parts": RawUpload(
        multipart(*[part(b"x", b"") for _ in range(10_000)]), 400, "unexpected part 'x'"
    ),
    "ten_thousand_tiny_parts_after_the_real_ones": RawUpload(
        multipart(CONFIG, WEIGHTS, METADATA, *[part(b"", b"") for _ in range(10_000)]),
        400,
        "unexpected part ''",
    ),
    "metadata_sent_twice": RawUpload(multipart(METADATA, CONFIG, WEIGHTS, METADATA), 400, "twice"),
    "part_name_in_other_case": RawUpload(
        multipart(CONFIG, WEIGHTS, part(b"Metadata", b"{}", filename=None)), 400, "'Metadata'"
    ),
    "part_name_with_nul": RawUpload(
        multipart(CONFIG, WEIGHTS, part(b"metadata\x00", b"{}", filename=None)), 400, "unexpected"
    ),
    "part_header_of_two_mebibytes": RawUpload(
        multipart(part(b"metadata", b"{}", b"X-Bomb: " + b"A" * (2 << 20), filename=None)),
        400,
        "header size",
    ),
    "part_with_fifty_thousand_headers": RawUpload(
        multipart(part(b"metadata", b"{}", *[b"X-H: v"] * 50_000, filename=None)),
        400,
        "header count",
    ),
    "pickle_filename_on_an_expected_part": RawUpload(
        multipart(part(b"adapter_model.safetensors", VALID.weights, filename=b"model.PT")),
        400,
        "pickle",
    ),
    "multipart_mixed": RawUpload(
        multipart(CONFIG, WEIGHTS, METADATA),
        400,
        "multipart/form-data",
        content_type="multipart/mixed; boundary=" + BOUNDARY.decode(),
    ),
    "form_data_without_boundary": RawUpload(
        multipart(CONFIG, WEIGHTS, METADATA),
        400,
        "multipart/form-data",
        content_type="multipart/form-data",
    ),
    "no_content_type": RawUpload(
        multipart(CONFIG, WEIGHTS, METADATA), 400, "multipart/form-data", content_type=None
    ),
    "url_encoded_form": RawUpload(
        b"metadata=%7B%7D",
        400,
        "multipart/form-data",
        content_type="application/x-www-form-urlencoded",
    ),
    "boundary_not_in_body": RawUpload(
        multipart(CONFIG, WEIGHTS, METADATA, boundary=b"other"), 400, "malformed multipart"
    ),
    "content_length_of_a_yottabyte": RawUpload(
        multipart(METADATA), 413, "exceeds", headers={"Content-Length": str(10**24)}
    ),
    "content_length_of_five_thousand_digits": RawUpload(
        multipart(METADATA), 413, "exceeds", headers={"Content-Length": "9" * 5000}
    ),
    "content_length_negative": RawUpload(
        multipart(METADATA), 400, "Content-Length", headers={"Content-Length": "-1"}
    ),
    "content_length_superscript_digit": RawUpload(
        multipart(METADATA), 400, "Content-Length", headers={"Content-Length": "\u00b2"}
    ),
    "metadata_nested_two_hundred_thousand_deep": RawUpload(
        multipart(CONFIG, WEIGHTS, metadata_part('{"tags": ' + nested(100_000) + "}")),
        400,
        "JSON",
    ),
    "adapter_config_nested_four_hundred_thousand_deep": RawUpload(
        multipart(
            part(
                b"adapter_config.json",
                ('{"peft_type": "LORA", "x": ' + nested(200_000) + "}").encode(),
            ),
            WEIGHTS,
            METADATA,
        ),
        422,
        "JSON",
    ),
    "metadata_over_its_limit": RawUpload(
        multipart(CONFIG, WEIGHTS, metadata_part(" " * (300 * 1024) + "{}")), 413, "metadata"
    ),
    "metadata_with_a_hundred_thousand_character_task": RawUpload(
        multipart(CONFIG, WEIGHTS, metadata_part(json.dumps({"task_description": "x" * 100_000}))),
        422,
        "task_description",
    ),
    "metadata_with_sixty_five_sample_inputs": RawUpload(
        multipart(
            CONFIG,
            WEIGHTS,
            metadata_part(json.dumps({**DEFAULT_METADATA, "sample_inputs": ["q"] * 65})),
        ),
        422,
        "sample_inputs",
    ),
    "metadata_with_a_float_overflowing_density": RawUpload(
        multipart(CONFIG, WEIGHTS, metadata_part('{"task_description": "x", "density": 1e999}')),
        422,
        "density",
    ),
    "metadata_with_a_huge_parent_revision": RawUpload(
        multipart(
            CONFIG,
            WEIGHTS,
            metadata_part(json.dumps({**DEFAULT_METADATA, "parent_revision": 10**30})),
        ),
        422,  # beyond what a revision number column holds
        "parent_revision",
    ),
}


@pytest.mark.parametrize("case", RAW_UPLOADS.values(), ids=RAW_UPLOADS.keys())
def test_hostile_multipart_body_is_refused(hub: Hub, alice: str, case: RawUpload) -> None:
    headers = {**auth(alice), **case.headers}
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    headers = {name: value.encode("latin-1") for name, value in headers.items()}
    response = hub.client.post(UPLOAD, content=case.body, headers=headers)
    assert response.status_code == case.status, response.text
    assert case.message in response.json()["detail"]
    assert_nothing_stored(hub)


UNICODE_EXPERT_IDS = {
    "rtl_override": "alice/model\u202egpj.exe",
    "zero_width_space": "alice/tri\u200bvia",
    "zero_width_joiner": "alice/trivia\u200d",
    "cyrillic_homoglyph": "alice/tr\u0456via",
    "fullwidth_letters": "alice/\uff54\uff52\uff49\uff56\uff49\uff41",
    "combining_accent": "alice/trivia\u0301",
    "nul": "alice/tri\x00via",
    "owner_homoglyph": "\u0430lice/trivia",
    "sql_in_name": "alice/x';DROP TABLE revisions;--",
    "percent_encoded_traversal": "alice/..%2F..%2Fetc",
}


@pytest.mark.parametrize("expert", UNICODE_EXPERT_IDS.values(), ids=UNICODE_EXPERT_IDS.keys())
def test_expert_id_with_unicode_tricks_or_sql_is_refused(hub: Hub, alice: str, expert: str) -> None:
    owner, name = expert.split("/", 1)
    path = f"/api/v1/experts/{quote(owner, safe='')}/{quote(name, safe='')}/revisions"
    response = hub.client.post(path, **upload_form(VALID), headers=auth(alice))
    assert response.status_code in (400, 404), response.text
    assert_nothing_stored(hub)


INVISIBLE_TAGS = {
    "rtl_override": "qa\u202e",
    "zero_width_space": "\u200bqa",
    "byte_order_mark": "\ufeffqa",
    "nul": "qa\x00",
    "sql_quote": "1' OR '1'='1",
    "newline": "qa\nen",
}


@pytest.mark.parametrize("tag", INVISIBLE_TAGS.values(), ids=INVISIBLE_TAGS.keys())
def test_tag_with_invisible_characters_or_quotes_is_refused(hub: Hub, alice: str, tag: str) -> None:
    response = hub.upload(
        "alice/victim", VALID, token=alice, metadata={**DEFAULT_METADATA, "tags": [tag]}
    )
    assert response.status_code == 422, response.text
    assert "tags" in response.json()["detail"]
    assert_nothing_stored(hub)


def test_sql_looking_text_is_stored_verbatim_and_filters_match_exactly(
    hub: Hub, alice: str
) -> None:
    sql = "'; DROP TABLE revisions; -- \" OR 1=1 /* \u202e */"
    metadata = {"task_description": sql, "sample_inputs": [sql, "%", "_"], "tags": ["qa"]}
    assert hub.upload("alice/victim", VALID, token=alice, metadata=metadata).status_code == 201
    detail = hub.client.get("/api/v1/experts/alice/victim/revisions/latest").json()
    assert (detail["task_description"], detail["sample_inputs"]) == (sql, [sql, "%", "_"])
    for params in (
        {"owner": "' OR 1=1 --"},
        {"owner": "%"},
        {"owner": "alic_"},
        {"tag": "%"},
        {"base_model": "tiny/llama' OR '1'='1"},
        {"peft_type": "LORA' --"},
    ):
        listed = hub.client.get("/api/v1/experts", params=params)
        assert listed.status_code == 200, listed.text
        assert listed.json()["total"] == 0, params
    assert hub.client.get("/api/v1/experts", params={"owner": "alice"}).json()["total"] == 1
    with hub.sessions() as session:
        counts = [
            session.scalar(select(func.count()).select_from(t)) for t in (User, Expert, Revision)
        ]
    assert counts == [1, 1, 1]


def test_nul_in_query_parameters_is_not_a_server_error(hub: Hub) -> None:
    """PostgreSQL text cannot hold NUL; SQLite can (and finds nothing)."""
    for params in ({"owner": "al\x00ice"}, {"tag": "\x00"}, {"base_model": "a\x00"}):
        response = hub.client.get("/api/v1/experts", params=params)
        assert response.status_code < 500, response.text


@pytest.fixture
def uploaded(hub: Hub, alice: str) -> str:
    """The blob URL of alice/victim revision 1."""
    assert hub.upload("alice/victim", VALID, token=alice).status_code == 201
    return "/api/v1/experts/alice/victim/revisions/1/blob"


HOSTILE_RANGES = [
    "bytes=-0",
    "bytes=5-2",
    "bytes=-1-5",
    "bytes=99999999999999999999-",
    "bytes=0-99999999999999999999",
    "bytes=-99999999999999999999",
    "bytes=9999999999999999999-",
    "bytes=0-0,2-3",
    "bytes=0x10-",
    "bytes=\u0661-\u0662",
    "items=0-1",
    "bytes=",
    "bytes=-",
]


@pytest.mark.parametrize("header", HOSTILE_RANGES)
def test_hostile_range_header_answers_416(hub: Hub, uploaded: str, header: str) -> None:
    response = hub.client.get(uploaded, headers={"Range": header.encode()})
    assert response.status_code == 416, response.text
    assert response.headers["content-range"].startswith("bytes */")


def test_range_past_the_end_is_clipped_to_the_blob(hub: Hub, uploaded: str) -> None:
    whole = hub.client.get(uploaded).content
    tail = hub.client.get(uploaded, headers={"Range": "bytes=-9223372036854775807"})
    assert (tail.status_code, tail.content) == (206, whole)
    head = hub.client.get(uploaded, headers={"Range": "bytes=0-9223372036854775807"})
    assert (head.status_code, head.content) == (206, whole)


@pytest.mark.parametrize(
    "revision", ["0", "-1", "1e3", "\u0663", "0x1", "9999999999", "latest%00", "%20latest"]
)
def test_hostile_revision_reference_answers_400(hub: Hub, uploaded: str, revision: str) -> None:
    response = hub.client.get(f"/api/v1/experts/alice/victim/revisions/{revision}")
    assert response.status_code == 400, response.text
    assert "revision" in response.json()["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": -5},
        {"offset": -1},
        {"offset": 10**19},
        {"limit": "1e2"},
        {"owner": "o" * 97},
    ],
)
def test_page_out_of_range_answers_422(hub: Hub, params: dict[str, object]) -> None:
    response = hub.client.get("/api/v1/experts", params=params)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Basic YWxpY2U6c2VjcmV0",
        "Bearer chub_\x00\x00_secret",
        "Bearer chub_0123456789abcdef",
        "Bearer chub__",
        "Bearer " + "A" * (1 << 20),
        "Bearer chub_' OR '1'='1_x",
        "Bearer chub_\u0430bc_secret",
    ],
    ids=[
        "empty",
        "blank",
        "basic",
        "nul",
        "no_secret",
        "underscores",
        "one_mebibyte",
        "sql",
        "homoglyph",
    ],
)
def test_odd_authorization_headers_answer_401(hub: Hub, authorization: str) -> None:
    response = hub.client.post(
        UPLOAD, **upload_form(VALID), headers={"Authorization": authorization.encode()}
    )
    assert response.status_code == 401, response.text
    assert_nothing_stored(hub)


def test_search_body_nested_deeply_answers_4xx(hub: Hub) -> None:
    body = '{"base_model": "tiny/llama", "query": ' + nested(100_000) + "}"
    response = hub.client.post(
        "/api/v1/search", content=body, headers={"Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text


def test_search_with_nul_in_base_model_answers_4xx(hub: Hub) -> None:
    response = hub.client.post("/api/v1/search", json={"base_model": "a\x00b", "query": "x"})
    assert 400 <= response.status_code < 500, response.text


# --- over a real socket: bodies that arrive slowly or never finish --------------------------


@pytest.fixture
def server(hub: Hub) -> Iterator[tuple[str, int]]:
    """(host, port) of a uvicorn server on the hub's settings."""
    with served_over_http(create_app(hub.settings)) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def raw_request(body: bytes, token: str, *, length: int | None = None) -> bytes:
    """The bytes of an upload request, headers and body; `length` may lie."""
    headers = [
        f"POST {UPLOAD} HTTP/1.1",
        "Host: localhost",
        f"Authorization: Bearer {token}",
        f"Content-Type: {FORM_DATA}",
        f"Content-Length: {len(body) if length is None else length}",
        "Connection: close",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def status_of(sock: socket.socket) -> int:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_body_trickled_in_tiny_pieces_is_received_whole(
    hub: Hub, alice: str, server: tuple[str, int]
) -> None:
    request = raw_request(multipart(CONFIG, WEIGHTS, METADATA), alice)
    with socket.create_connection(server, timeout=60) as sock:
        for start in range(0, len(request), 97):
            sock.sendall(request[start : start + 97])
        assert status_of(sock) == 201
    assert hub.revision_count() == 1


def test_body_abandoned_half_way_leaves_nothing(
    hub: Hub, alice: str, server: tuple[str, int]
) -> None:
    """The client promises the whole body, sends half and disconnects: no row, no blob, and the
    request's temporary files are removed (checked by no_leftover_upload_files)."""
    request = raw_request(multipart(CONFIG, WEIGHTS, METADATA), alice)
    with socket.create_connection(server, timeout=60) as sock:
        sock.sendall(request[: len(request) // 2])
    deadline = time.monotonic() + 30
    while any(Path(hub.settings.data_dir).glob("**/compeft-hub-upload-*")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert hub.client.get("/healthz").status_code == 200
    assert_nothing_stored(hub)


def test_tokens_and_tags_tables_hold_no_hostile_leftovers(hub: Hub, alice: str) -> None:
    """After refused uploads with hostile tags, no tag row exists and the one token is intact."""
    for tag in INVISIBLE_TAGS.values():
        hub.upload("alice/victim", VALID, token=alice, metadata={**DEFAULT_METADATA, "tags": [tag]})
    with hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RevisionTag)) == 0
        assert session.scalar(select(func.count()).select_from(ApiToken)) == 1


# --- blobs a hostile or broken hub could serve (the client decodes them) -------------------


def nested_header_blob() -> bytes:
    header = ('{"__metadata__": {}, "x": ' + nested(200_000) + "}").encode()
    return struct.pack("<Q", len(header)) + header


def nested_index_blob() -> bytes:
    small = compress({"a.lora_A.weight": torch.ones(4, 8)}, 0.5, "tensor").to_bytes()
    deep = zlib.compress(("{" + '"a":' + nested(200_000) + "}").encode(), 9)
    return _rewrite(small, lambda arrays, _: arrays.update(index=np.frombuffer(deep, np.uint8)))


@pytest.mark.parametrize("blob", [nested_header_blob, nested_index_blob], ids=["header", "index"])
def test_blob_with_json_nested_deeply_raises_blob_format_error(blob: Callable[[], bytes]) -> None:
    with pytest.raises(BlobFormatError, match="JSON"):
        CompressedExpert.from_bytes(blob()).decompress()
