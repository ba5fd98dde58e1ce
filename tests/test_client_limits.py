"""The client treats whatever answers at its endpoint as hostile: each size the hub announces or
sends is bounded before the bytes are read or the memory allocated (ClientLimits, settings.py).

Each test serves `HostileHub`, a small app on loopback answering a revision and its blob as the
test says. Its large bodies are generated lazily and counted: uvicorn stops a streamed body when
the client hangs up, so the count says how much the client let the server send.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from compeft_core import CompressedExpert
from compeft_core.compress import compress
from registry.client import HubClient, HubError, NotFoundError, RetryPolicy
from registry.client.errors import LimitExceededError
from registry.client.settings import MAX_ERROR_BODY_BYTES, ClientLimits, MiB
from tests.fixtures.registry import served_over_http

pytestmark = pytest.mark.timeout(120)

EXPERT = "eve/evil@1"
CHUNK = b"x" * (64 * 1024)
HUGE = 256 * MiB  # a client reading all of it shows; one that stops reading never gets near
# What a server may have generated beyond what the client read: the loopback socket buffers.
IN_FLIGHT = 16 * MiB
ENDLESS = float("inf")
QUICKLY_S = 10.0

Answer = Callable[["HostileHub"], Response]


def revision_answer(blob: bytes, **overrides: Any) -> dict[str, Any]:
    """The RevisionDetail of EXPERT, announcing `blob` unless `overrides` say otherwise."""
    summary = {"min": 1.0, "mean": 1.0, "max": 1.0}
    return {
        "id": "eve/evil",
        "revision": 1,
        "created_at": "2026-01-01T00:00:00Z",
        "base_model": None,
        "peft_type": "LORA",
        "task_description": "evil",
        "tags": [],
        "blob_sha256": hashlib.sha256(blob).hexdigest(),
        "blob_bytes": len(blob),
        "density": 0.1,
        "scope": "global",
        "original_bytes": len(blob),
        "original_dtype": "float32",
        "num_params": 1,
        "compression_ratio": 1.0,
        "compression_ratio_fp16": 2.0,
        "bits_per_param": 1.0,
        "sigma": summary,
        "default_alpha": summary,
        "rank": None,
        "lora_alpha": None,
        "target_modules": [],
        "adapter_config": {"peft_type": "LORA"},
        "sample_inputs": [],
        "blob_missing": False,
        **overrides,
    }


def announcing(blob: bytes, **overrides: Any) -> Answer:
    return lambda hub: JSONResponse(revision_answer(blob, **overrides))


def sending(data: bytes) -> Answer:
    return lambda hub: Response(data)


NO_BLOB = sending(b"")


@dataclass
class HostileHub:
    """Answers `GET .../blob` with `blob` and every other request with `revision`."""

    revision: Answer
    blob: Answer = NO_BLOB
    seen: list[tuple[str, str | None]] = field(default_factory=list)  # path, Accept-Encoding
    generated: int = 0

    async def body(self, total: float, *, prefix: bytes = b"") -> AsyncIterator[bytes]:
        """`prefix`, then CHUNKs until `total` bytes in all, each counted once handed over.

        uvicorn's send returns at once after a disconnect, so each chunk also yields to the event
        loop, where starlette notices the disconnect and stops this body.
        """
        self.generated += len(prefix)
        yield prefix
        while self.generated < total:
            await asyncio.sleep(0)
            self.generated += len(CHUNK)
            yield CHUNK

    def settled(self) -> int:
        """The bytes generated, once the server has stopped generating."""
        while True:
            before = self.generated
            time.sleep(0.3)
            if self.generated == before:
                return before

    async def answer(self, request: Request) -> Response:
        self.seen.append((request.url.path, request.headers.get("accept-encoding")))
        return (self.blob if request.url.path.endswith("/blob") else self.revision)(self)


@contextmanager
def client_of(hub: HostileHub, cache: Path, **limits: int) -> Iterator[HubClient]:
    """A HubClient of `hub`, without retries, its limits from the environment and `limits`."""
    app = Starlette(routes=[Route("/{path:path}", hub.answer)])
    with (
        served_over_http(app) as url,
        HubClient(
            url,
            cache_dir=cache,
            retry=RetryPolicy(attempts=1),
            progress=False,
            limits=ClientLimits(**limits),
        ) as client,
    ):
        yield client


def kept_blobs(cache: Path) -> list[str]:
    """The blobs and partial downloads in the cache (not the lock files)."""
    return sorted(path.name for path in (cache / "blobs").glob("*") if path.suffix != ".lock")


def test_blob_longer_than_announced_is_cut_off_and_not_kept(tmp_path: Path) -> None:
    blob = b"b" * MiB
    hub = HostileHub(
        announcing(blob), blob=lambda hub: StreamingResponse(hub.body(ENDLESS, prefix=blob))
    )
    started = time.monotonic()
    with (
        client_of(hub, tmp_path) as client,
        pytest.raises(LimitExceededError, match=f"more than the announced {len(blob)} bytes"),
    ):
        client.pull(EXPERT)
    assert time.monotonic() - started < QUICKLY_S
    assert hub.settled() < len(blob) + IN_FLIGHT
    assert kept_blobs(tmp_path) == []


def test_blob_with_content_length_above_announced_is_refused_before_its_body(
    tmp_path: Path,
) -> None:
    blob = CHUNK * (2 * IN_FLIGHT // len(CHUNK))  # what the body starts with, lazily
    hub = HostileHub(
        announcing(blob),
        blob=lambda hub: StreamingResponse(hub.body(HUGE), headers={"Content-Length": str(HUGE)}),
    )
    with (
        client_of(hub, tmp_path) as client,
        pytest.raises(
            LimitExceededError, match=f"Content-Length {HUGE}, more than the {len(blob)} bytes"
        ),
    ):
        client.pull(EXPERT)
    assert hub.settled() < IN_FLIGHT + len(CHUNK)  # not even the announced bytes were read
    assert kept_blobs(tmp_path) == []


def test_announced_blob_above_the_client_cap_is_never_requested(tmp_path: Path) -> None:
    hub = HostileHub(announcing(b"", blob_bytes=1 << 40), blob=sending(b"a terabyte, honest"))
    with (
        client_of(hub, tmp_path) as client,
        pytest.raises(LimitExceededError, match=f"{1 << 40} bytes.*COMPEFT_HUB_MAX_BLOB_BYTES"),
    ):
        client.pull(EXPERT)
    assert [path for path, _ in hub.seen if path.endswith("/blob")] == []


def test_blob_cap_is_set_by_its_environment_variable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COMPEFT_HUB_MAX_BLOB_BYTES", "1000")
    blob = b"b" * 1001
    hub = HostileHub(announcing(blob), blob=sending(blob))
    with client_of(hub, tmp_path) as client, pytest.raises(LimitExceededError, match="0 to 1000 "):
        client.pull(EXPERT)
    assert [path for path, _ in hub.seen if path.endswith("/blob")] == []


@pytest.mark.parametrize("failing", ["revision", "blob"])
def test_huge_error_body_is_read_only_up_to_its_cap(tmp_path: Path, failing: str) -> None:
    def not_found(hub: HostileHub) -> Response:
        return StreamingResponse(
            hub.body(HUGE, prefix=b'{"detail": "no such expert'),
            status_code=404,
            media_type="application/json",
        )

    blob = b"b" * 1000
    hub = HostileHub(not_found if failing == "revision" else announcing(blob), blob=not_found)
    started = time.monotonic()
    with (
        client_of(hub, tmp_path) as client,
        pytest.raises(NotFoundError, match="404: .*no such expert"),
    ):
        client.pull(EXPERT)
    assert time.monotonic() - started < QUICKLY_S
    assert hub.settled() < MAX_ERROR_BODY_BYTES + IN_FLIGHT


def test_json_answer_over_its_cap_is_refused_while_reading(tmp_path: Path) -> None:
    hub = HostileHub(
        lambda hub: StreamingResponse(
            hub.body(HUGE, prefix=b'{"id": "'), media_type="application/json"
        )
    )
    with (
        client_of(hub, tmp_path, max_answer_bytes=MiB) as client,
        pytest.raises(
            LimitExceededError, match=f"limit of {MiB} bytes.*COMPEFT_HUB_MAX_ANSWER_BYTES"
        ),
    ):
        client.info(EXPERT)
    assert hub.settled() < MiB + IN_FLIGHT


def test_client_asks_for_identity_and_refuses_a_compressed_answer(tmp_path: Path) -> None:
    """httpx would inflate a gzip (or zstd) answer whole, whatever the caps on what is read."""
    inflated = json.dumps(revision_answer(b"blob")).encode() + b" " * (64 * MiB)
    bomb = gzip.compress(inflated, compresslevel=9)
    assert len(bomb) < MiB
    hub = HostileHub(
        lambda hub: Response(
            bomb, headers={"Content-Encoding": "gzip"}, media_type="application/json"
        )
    )
    with (
        client_of(hub, tmp_path) as client,
        pytest.raises(HubError, match="Content-Encoding 'gzip'"),
    ):
        client.info(EXPERT)
    assert hub.seen == [("/api/v1/experts/eve/evil/revisions/1", "identity")]


def huge_blob() -> bytes:
    """A well-formed blob declaring 2**32 parameters (16 GiB as float32) in 2.2 MB, enough blob
    bytes per parameter for the decoder's own bound (MAX_PARAMS_PER_BLOB_BYTE) to let it by."""
    kept = 8 * 2_200_000
    return CompressedExpert(
        names=("w",),
        shapes=((1 << 16, 1 << 16),),
        dtypes=("float32",),
        scope="global",
        density=kept / (1 << 32),
        sigma=np.ones(1, np.float32),
        alpha=np.ones(1, np.float32),
        mask_words=np.zeros(2, np.uint32),
        mask_streams=(2,),
        signs=np.zeros(kept // 8, np.uint8),
        kept=kept,
    ).to_bytes()


def load_for_composition(client: HubClient, path: Path) -> object:
    from registry.client.composition import load_lora_experts

    return load_lora_experts(client, [EXPERT])


DECOMPRESSING: dict[str, Callable[[HubClient, Path], object]] = {
    "load": lambda client, path: client.load(EXPERT),
    "export_peft": lambda client, path: client.export_peft(EXPERT, path / "export"),
    "load_lora_experts": load_for_composition,
}


@pytest.mark.parametrize("metadata_tells", [True, False], ids=["announced", "only-in-blob"])
@pytest.mark.parametrize("decompress", DECOMPRESSING.values(), ids=DECOMPRESSING.keys())
def test_expert_decompressing_past_the_cap_is_refused_before_allocating(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    metadata_tells: bool,
    decompress: Callable[[HubClient, Path], object],
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("decompress was called")

    monkeypatch.setattr(CompressedExpert, "decompress", never)
    blob = huge_blob()
    hub = HostileHub(
        announcing(blob, num_params=(1 << 32) if metadata_tells else 1), blob=sending(blob)
    )
    with (
        client_of(hub, tmp_path) as client,
        pytest.raises(
            LimitExceededError,
            match=f"declares {1 << 32} parameters.*COMPEFT_HUB_MAX_DECOMPRESSED_BYTES",
        ),
    ):
        decompress(client, tmp_path)
    downloaded = [path for path, _ in hub.seen if path.endswith("/blob")] != []
    assert downloaded is not metadata_tells


def test_decompression_cap_counts_the_output_dtype(tmp_path: Path) -> None:
    expert = compress({"w": torch.randn(1000)}, density=0.5)
    blob = expert.to_bytes()
    hub = HostileHub(announcing(blob, num_params=1000), blob=sending(blob))
    with client_of(hub, tmp_path, max_decompressed_bytes=3000) as client:
        assert client.load(EXPERT, dtype=torch.float16)["w"].shape == (1000,)
        with pytest.raises(LimitExceededError, match="4000 bytes as torch.float32"):
            client.load(EXPERT, dtype=torch.float32)
