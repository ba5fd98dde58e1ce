"""Every malformed, unsafe or unauthorized upload answers 4xx and leaves no row and no blob."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.adapter_files import (
    DEFAULT_METADATA,
    AdapterFiles,
    lora_adapter,
    lora_config,
    lora_tensors,
)
from tests.fixtures.registry import Hub, auth, open_hub

pytestmark = pytest.mark.usefixtures("no_leftover_upload_files")

VALID = lora_adapter()


def with_tensor(name_part: str, change: Callable[[torch.Tensor], torch.Tensor]) -> AdapterFiles:
    """The valid adapter with `change` applied to the first tensor whose name has `name_part`."""
    tensors = lora_tensors()
    target = next(name for name in tensors if name_part in name)
    tensors[target] = change(tensors[target])
    return AdapterFiles.of(lora_config(), tensors)


def pickle_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save(lora_tensors(), buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class Hostile:
    """One bad upload: what is sent and what the hub must answer."""

    adapter: AdapterFiles = VALID
    metadata: dict[str, Any] | str | None = None
    extra_files: dict[str, bytes] = field(default_factory=dict)
    skip: tuple[str, ...] = ()
    status: int = 422
    message: str = ""


HOSTILE_UPLOADS = {
    "truncated_safetensors": Hostile(
        AdapterFiles(VALID.config, VALID.weights[:-7]), message="safetensors"
    ),
    "header_claims_huge_size": Hostile(
        AdapterFiles(VALID.config, struct.pack("<Q", 2**62) + VALID.weights[8:]),
        message="truncated",
    ),
    "pickle_renamed_safetensors": Hostile(
        AdapterFiles(VALID.config, pickle_bytes()), message="pickle"
    ),
    "bin_part": Hostile(
        extra_files={"adapter_model.bin": pickle_bytes()}, status=400, message="pickle"
    ),
    "only_bin_part": Hostile(
        extra_files={"adapter_model.bin": pickle_bytes()},
        skip=("adapter_model.safetensors",),
        status=400,
        message="pickle",
    ),
    "missing_config": Hostile(skip=("adapter_config.json",), status=400, message="missing"),
    "missing_weights": Hostile(skip=("adapter_model.safetensors",), status=400, message="missing"),
    "config_not_json": Hostile(AdapterFiles(b"{peft_type: LORA", VALID.weights), message="JSON"),
    "config_not_object": Hostile(AdapterFiles(b"[1, 2]", VALID.weights), message="object"),
    "unsupported_peft_type": Hostile(
        AdapterFiles.of(lora_config(peft_type="PREFIX_TUNING"), lora_tensors()),
        message="PREFIX_TUNING",
    ),
    "shapes_disagree": Hostile(
        with_tensor("lora_B", lambda b: b[:, :3]), message="do not form a LoRA pair"
    ),
    "nan_value": Hostile(
        with_tensor("lora_A", lambda a: a.index_fill(1, torch.tensor([2]), torch.nan)),
        message="NaN",
    ),
    "inf_value": Hostile(
        with_tensor("lora_B", lambda b: b.index_fill(0, torch.tensor([0]), torch.inf)),
        message="infinite",
    ),
    "integer_tensor": Hostile(
        with_tensor("lora_A", lambda a: a.to(torch.int32)), message="floating point"
    ),
    "empty_adapter": Hostile(AdapterFiles.of(lora_config(), {}), message="no tensors"),
    "base_model_with_nul": Hostile(
        AdapterFiles.of(lora_config(base_model_name_or_path="evil\x00model"), lora_tensors()),
        message="printable",
    ),
    "missing_metadata": Hostile(skip=("metadata",), status=400, message="missing"),
    "metadata_not_json": Hostile(metadata="{task_description:", status=400, message="JSON"),
    "metadata_not_object": Hostile(metadata='["x"]', status=400, message="object"),
    "metadata_without_task": Hostile(metadata={"tags": ["qa"]}, message="task_description"),
    "metadata_unknown_key": Hostile(metadata={**DEFAULT_METADATA, "densty": 0.2}, message="densty"),
    "density_zero": Hostile(metadata={**DEFAULT_METADATA, "density": 0}, message="density"),
    "density_two": Hostile(metadata={**DEFAULT_METADATA, "density": 2}, message="density"),
    "unknown_scope": Hostile(metadata={**DEFAULT_METADATA, "scope": "row"}, message="scope"),
    "unknown_factorisation": Hostile(
        metadata={**DEFAULT_METADATA, "factorisation": "svd"},
        message="factorisation: Input should be 'as-trained' or 'balanced'",
    ),
    "unknown_scale": Hostile(metadata={**DEFAULT_METADATA, "scale": 2}, message="scale"),
    "unknown_codec": Hostile(
        metadata={**DEFAULT_METADATA, "codec": "zip"},
        message="codec: Input should be 'compeft', 'bitdelta', 'dare' or 'deltadq'",
    ),
    "value_bits_nine": Hostile(
        metadata={**DEFAULT_METADATA, "value_bits": 9}, message="value_bits"
    ),
    "value_bits_text": Hostile(
        metadata={**DEFAULT_METADATA, "value_bits": "4"}, message="value_bits"
    ),
    "bitdelta_below_density_one": Hostile(
        metadata={**DEFAULT_METADATA, "codec": "bitdelta", "density": 0.5},
        message="codec bitdelta keeps every entry",
    ),
    "levels_with_a_fixed_alpha": Hostile(
        metadata={**DEFAULT_METADATA, "value_bits": 2, "alpha": 1.0},
        message="scale must be 'entry' and alpha None",
    ),
    "bad_tag": Hostile(metadata={**DEFAULT_METADATA, "tags": ["a/b"]}, message="tags"),
    "nul_in_task": Hostile(
        metadata={**DEFAULT_METADATA, "task_description": "a\x00b"}, message="control"
    ),
    "unexpected_part": Hostile(extra_files={"notes.txt": b"hi"}, status=400, message="unexpected"),
}


@pytest.fixture
def blob_store_url(tmp_path: Path) -> str:
    """Refused uploads fail before the blob put: local folder only (S3: test_registry_upload)."""
    return (tmp_path / "blobs").as_uri()


@pytest.fixture
def alice(hub: Hub) -> str:
    return hub.token("alice")


def assert_nothing_stored(hub: Hub) -> None:
    assert hub.revision_count() == 0
    assert hub.blob_keys() == set()


@pytest.mark.parametrize("case", HOSTILE_UPLOADS.values(), ids=HOSTILE_UPLOADS.keys())
def test_hostile_upload_is_refused_and_leaves_nothing(hub: Hub, alice: str, case: Hostile) -> None:
    response = hub.upload(
        "alice/victim",
        case.adapter,
        token=alice,
        metadata=case.metadata,
        extra_files=case.extra_files,
        skip=case.skip,
    )
    assert response.status_code == case.status, response.text
    assert case.message in response.json()["detail"]
    assert_nothing_stored(hub)


@pytest.mark.parametrize(
    "expert",
    [
        "alice/..",
        "alice/a..b",
        "alice/-x",
        "alice/x.",
        "alice/a--b",
        "alice/a%00b",
        "alice/a%0Ab",
        "alice/" + "n" * 97,
        "al%20ice/x",
    ],
)
def test_invalid_expert_id_is_refused(hub: Hub, alice: str, expert: str) -> None:
    response = hub.upload(expert, VALID, token=alice)
    assert response.status_code in (400, 404), response.text
    assert_nothing_stored(hub)


def test_slash_in_name_does_not_reach_the_upload_route(hub: Hub, alice: str) -> None:
    response = hub.upload("alice/a%2Fb", VALID, token=alice)
    assert response.status_code in (400, 404, 405)
    assert_nothing_stored(hub)


@pytest.mark.parametrize(
    ("token_of", "status"),
    [("nobody", 401), ("garbage", 401), ("missing", 401), ("bob", 403), ("alice-read-only", 403)],
)
def test_upload_without_write_access_is_refused(hub: Hub, token_of: str, status: int) -> None:
    tokens = {
        "garbage": "chub_0123456789abcdef_not-a-real-secret",
        "nobody": hub.token("alice")[:-3] + "xyz",
        "missing": None,
        "bob": hub.token("bob"),
        "alice-read-only": hub.token("alice", read_only=True),
    }
    response = hub.upload("alice/victim", VALID, token=tokens[token_of])
    assert response.status_code == status, response.text
    assert_nothing_stored(hub)


def test_body_not_multipart_is_refused(hub: Hub, alice: str) -> None:
    response = hub.client.post(
        "/api/v1/experts/alice/victim/revisions", json=DEFAULT_METADATA, headers=auth(alice)
    )
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["detail"]
    assert_nothing_stored(hub)


def test_multipart_body_cut_short_is_refused(hub: Hub, alice: str) -> None:
    boundary = "cut"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n'
        f"{json.dumps(DEFAULT_METADATA)}\r\n--{boundary}\r\n"
        'Content-Disposition: form-data; name="adapter_model.safetensors"; filename="x"\r\n\r\n'
    ).encode() + VALID.weights[:100]
    response = hub.client.post(
        "/api/v1/experts/alice/victim/revisions",
        content=body,
        headers={**auth(alice), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 400
    assert_nothing_stored(hub)


def test_part_sent_twice_is_refused(hub: Hub, alice: str) -> None:
    response = hub.client.post(
        "/api/v1/experts/alice/victim/revisions",
        files=[
            ("adapter_config.json", ("a", VALID.config)),
            ("adapter_config.json", ("b", VALID.config)),
            ("adapter_model.safetensors", ("c", VALID.weights)),
        ],
        data={"metadata": json.dumps(DEFAULT_METADATA)},
        headers=auth(alice),
    )
    assert response.status_code == 400
    assert "twice" in response.json()["detail"]
    assert_nothing_stored(hub)


@pytest.fixture
def small_limit_hub(hub: Hub) -> Iterator[Hub]:
    """The same database and store, served with a 2 KiB upload limit."""
    with open_hub(hub.settings.model_copy(update={"max_upload_bytes": 2048})) as limited:
        yield limited


def test_oversized_upload_with_content_length_is_refused(small_limit_hub: Hub) -> None:
    hub = small_limit_hub
    response = hub.upload("alice/victim", lora_adapter(), token=hub.token("alice"))
    assert response.status_code == 413
    assert "2048" in response.json()["detail"]
    assert_nothing_stored(hub)


def test_oversized_chunked_upload_is_refused_while_streaming(small_limit_hub: Hub) -> None:
    hub = small_limit_hub
    token = hub.token("alice")
    request = hub.client.build_request(
        "POST",
        "/api/v1/experts/alice/victim/revisions",
        files={"adapter_model.safetensors": ("w", VALID.weights)},
        data={"metadata": json.dumps(DEFAULT_METADATA)},
        headers=auth(token),
    )
    body = request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
    chunks = (body[i : i + 512] for i in range(0, len(body), 512))
    response = hub.client.post(request.url.path, content=chunks, headers=headers)
    assert response.status_code == 413
    assert_nothing_stored(hub)
