"""HubClient against a real hub over loopback HTTP: uploads of real peft adapters, the verified
cache, resumed and corrupted downloads, error mapping and retries.

Decoded tensors are compared with the ComPEFT formula of tests/compeft_reference.py applied to
the uploaded weights, so the whole path (upload, server-side compression, download, decode) is
checked against an independent implementation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from tqdm import tqdm

from compeft_core import AdapterFormatError
from registry.client import (
    AuthError,
    BadRequestError,
    ChecksumMismatchError,
    ConflictError,
    ExpertRef,
    ForbiddenError,
    HubClient,
    NotCachedError,
    NotFoundError,
    RateLimitedError,
    ServerUnavailableError,
)
from tests.compeft_reference import reference_decompress
from tests.fixtures.live_hub import FAST_RETRIES, RETRY_AFTER_S, TINY_BASE_MODEL, LiveHub
from tests.test_peft_io import tiny_base

DENSITY = 0.25
ALPHA = 1.5
EXPERT = "alice/qa"
DESCRIPTION = "Answer trivia questions in one short sentence."


@pytest.fixture
def adapter_folder(peft_adapter_folders: list[Path]) -> Path:
    return peft_adapter_folders[0]


@pytest.fixture
def uploaded(hub_client: HubClient, adapter_folder: Path) -> str:
    """EXPERT at revision 1, compressed with DENSITY."""
    hub_client.upload(adapter_folder, EXPERT, description=DESCRIPTION, density=DENSITY)
    return EXPERT


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_upload_list_and_info_describe_the_revision(
    hub_client: HubClient, adapter_folder: Path
) -> None:
    created = hub_client.upload(
        adapter_folder,
        EXPERT,
        description=DESCRIPTION,
        samples=["Who wrote Hamlet?"],
        tags=["qa", "en"],
        density=DENSITY,
        scope="global",
    )
    assert (created.id, created.revision, created.density, created.scope) == (
        EXPERT,
        1,
        DENSITY,
        "global",
    )
    assert created.compression_ratio > 1

    page = hub_client.list_experts(tag="qa")
    assert page.total == 1 and [item.id for item in page.items] == [EXPERT]
    assert hub_client.list_experts(tag="other").total == 0
    assert [item.id for item in hub_client.list_experts(q="TRIVIA", sort="recent").items] == [
        EXPERT
    ]
    assert hub_client.list_experts(q="no such text").total == 0
    with pytest.raises(BadRequestError, match="query.sort: Input should be 'created', 'recent'"):
        hub_client.list_experts(sort="newest")

    info = hub_client.info(EXPERT)
    assert info.revision == 1 and info.blob_sha256 == created.blob_sha256
    assert info.adapter_config == json.loads((adapter_folder / "adapter_config.json").read_text())
    assert info.sample_inputs == ["Who wrote Hamlet?"] and info.tags == ["en", "qa"]


def test_pull_downloads_once_then_answers_from_the_verified_cache(
    live_hub: LiveHub, hub_client: HubClient, uploaded: str, tmp_path: Path
) -> None:
    first = hub_client.pull(uploaded)
    second = hub_client.pull(f"{uploaded}@1")
    sha256 = hub_client.info(uploaded).blob_sha256
    assert first == second == hub_client.cache.root / "blobs" / sha256
    assert sha256_of(first) == first.name
    assert len(live_hub.recorder.blob_downloads()) == 1

    requests_so_far = len(live_hub.recorder.requests)
    with live_hub.client(hub_client.cache.root, offline=True) as offline:
        assert offline.pull(uploaded) == first
        assert offline.load(uploaded).keys() == hub_client.load(uploaded).keys()
    assert len(live_hub.recorder.requests) == requests_so_far + 1  # the online load's info


def test_search_ranks_the_expert_whose_task_fits_first(
    hub_client: HubClient, peft_adapter_folders: list[Path]
) -> None:
    hub_client.upload(
        peft_adapter_folders[0],
        "alice/trivia",
        description=DESCRIPTION,
        samples=["Who wrote Hamlet?"],
    )
    hub_client.upload(
        peft_adapter_folders[1],
        "alice/poems",
        description="Write short poems about the sea.",
        samples=["A poem about waves at night"],
    )
    results = hub_client.search(
        "Write a little poem about the ocean", base_model=TINY_BASE_MODEL, k=2
    )
    assert [(r.id, r.rank) for r in results] == [("alice/poems", 1), ("alice/trivia", 2)]
    assert results[0].score > results[1].score
    assert results[0].revision == hub_client.info("alice/poems@1")

    by_example = hub_client.search(
        examples=["Who painted the Mona Lisa?"], base_model=TINY_BASE_MODEL, k=1, peft_type="LORA"
    )
    assert [r.id for r in by_example] == ["alice/trivia"]
    excluded = hub_client.search("a poem", base_model=TINY_BASE_MODEL, exclude=["alice/poems"])
    assert [r.id for r in excluded] == ["alice/trivia"]
    with pytest.raises(NotFoundError):
        hub_client.search("a poem", base_model="other/model")
    with pytest.raises(BadRequestError, match="give a query, at least one example"):
        hub_client.search(base_model=TINY_BASE_MODEL)


def test_offline_client_without_cache_says_what_is_missing(
    live_hub: LiveHub, tmp_path: Path
) -> None:
    with (
        live_hub.client(tmp_path / "empty", offline=True) as offline,
        pytest.raises(NotCachedError, match="alice/qa@latest is not in the cache"),
    ):
        offline.pull(EXPERT)
    assert live_hub.recorder.requests == []


def test_load_decodes_to_the_compeft_formula(
    hub_client: HubClient, uploaded: str, adapter_folder: Path
) -> None:
    weights = load_file(adapter_folder / "adapter_model.safetensors")
    for alpha in (None, ALPHA):
        decoded = hub_client.load(uploaded, alpha=alpha)
        expected = reference_decompress(
            weights,
            DENSITY,
            "tensor",
            alpha,
            torch.float32,
            factorisation="balanced",
            scale="unbiased",
        )
        assert decoded.keys() == expected.keys() == weights.keys()
        for name, tensor in expected.items():  # the reference's SVD differs in the last bits
            torch.testing.assert_close(decoded[name], tensor, rtol=1e-5, atol=0)
    compressed = hub_client.load_expert(uploaded)
    assert compressed.density == DENSITY and set(compressed.names) == set(weights)


def test_exported_folder_loads_in_peft_with_the_decoded_weights(
    hub_client: HubClient, uploaded: str, tmp_path: Path
) -> None:
    folder = hub_client.export_peft(uploaded, tmp_path / "export", alpha=ALPHA)
    model = PeftModel.from_pretrained(tiny_base(), folder)
    decoded = hub_client.load(uploaded, alpha=ALPHA)
    loaded = {
        name.replace(".default", ""): param
        for name, param in model.named_parameters()
        if "lora_" in name
    }
    assert loaded.keys() == decoded.keys()
    assert all(torch.equal(loaded[name], decoded[name]) for name in decoded)


def test_revisions_are_pulled_by_number_or_latest(
    hub_client: HubClient, peft_adapter_folders: list[Path]
) -> None:
    for folder in peft_adapter_folders:
        hub_client.upload(folder, EXPERT, description=DESCRIPTION)
    first, latest = hub_client.pull(f"{EXPERT}@1"), hub_client.pull(EXPERT)
    assert latest == hub_client.pull(f"{EXPERT}@2") != first
    assert hub_client.info(f"{EXPERT}@1").revision == 1


def test_interrupted_transfer_is_resumed_with_range(
    live_hub: LiveHub, hub_client: HubClient, uploaded: str
) -> None:
    half = hub_client.info(uploaded).blob_bytes // 2
    live_hub.recorder.faults.cut_next_blob_after = half
    path = hub_client.pull(uploaded)
    assert sha256_of(path) == path.name
    assert [r.range for r in live_hub.recorder.blob_downloads()] == [None, f"bytes={half}-"]
    assert not hub_client.cache.partial_path(path.name).exists()


def test_partial_file_of_an_earlier_run_is_resumed(
    live_hub: LiveHub, hub_client: HubClient, uploaded: str, tmp_path: Path
) -> None:
    blob = reference_blob(live_hub, uploaded, tmp_path)
    sha256 = hashlib.sha256(blob).hexdigest()
    partial = hub_client.cache.partial_path(sha256)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(blob[: len(blob) // 2])
    path = hub_client.pull(uploaded)
    assert path.read_bytes() == blob
    assert [r.range for r in live_hub.recorder.blob_downloads()] == [f"bytes={len(blob) // 2}-"]


def reference_blob(live_hub: LiveHub, expert: str, tmp_path: Path) -> bytes:
    """The blob as another client with its own cache gets it (then forget its requests)."""
    with live_hub.client(tmp_path / "other-cache") as other:
        blob = other.pull(expert).read_bytes()
    live_hub.recorder.requests.clear()
    return blob


def test_server_ignoring_range_gets_the_whole_blob_again(
    live_hub: LiveHub, hub_client: HubClient, uploaded: str, tmp_path: Path
) -> None:
    blob = reference_blob(live_hub, uploaded, tmp_path)
    partial = hub_client.cache.partial_path(hashlib.sha256(blob).hexdigest())
    partial.parent.mkdir(parents=True)
    partial.write_bytes(blob[: len(blob) // 2])
    live_hub.recorder.faults.ignore_range = True
    assert hub_client.pull(uploaded).read_bytes() == blob
    assert len(live_hub.recorder.blob_downloads()) == 1


def test_wrong_partial_file_is_discarded_and_the_blob_downloaded_whole(
    live_hub: LiveHub, hub_client: HubClient, uploaded: str, tmp_path: Path
) -> None:
    blob = reference_blob(live_hub, uploaded, tmp_path)
    partial = hub_client.cache.partial_path(hashlib.sha256(blob).hexdigest())
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\x00" * 100)
    assert hub_client.pull(uploaded).read_bytes() == blob
    assert [r.range for r in live_hub.recorder.blob_downloads()] == ["bytes=100-", None]


def test_corrupted_cached_blob_is_detected_deleted_and_fetched_again(
    live_hub: LiveHub, hub_client: HubClient, uploaded: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = hub_client.pull(uploaded)
    expected = hub_client.load(uploaded)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="registry.client.cache"):
        reloaded = hub_client.load(uploaded)
    assert "corrupted" in caplog.text
    assert all(torch.equal(reloaded[name], expected[name]) for name in expected)
    assert sha256_of(path) == path.name
    assert len(live_hub.recorder.blob_downloads()) == 2

    path.write_bytes(b"garbage")
    assert hub_client.pull(uploaded) == path and sha256_of(path) == path.name
    assert len(live_hub.recorder.blob_downloads()) == 3


def test_download_whose_sha256_never_matches_raises_after_one_retry(
    live_hub: LiveHub, hub_client: HubClient, uploaded: str
) -> None:
    live_hub.recorder.faults.corrupt_blobs = True
    with pytest.raises(ChecksumMismatchError, match="differed from the announced"):
        hub_client.load(uploaded)
    assert len(live_hub.recorder.blob_downloads()) == 2
    sha256 = hub_client.info(uploaded).blob_sha256
    assert not hub_client.cache.blob_path(sha256).exists()
    assert not hub_client.cache.partial_path(sha256).exists()


def test_progress_bar_counts_the_blob_bytes(
    live_hub: LiveHub, uploaded: str, tmp_path: Path
) -> None:
    bars: list[tuple[tqdm, bool]] = []

    class RecordingTqdm(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            bars.append((self, kwargs["disable"]))

    with live_hub.client(tmp_path / "cache", progress=True, tqdm_class=RecordingTqdm) as client:
        size = client.info(uploaded).blob_bytes
        client.pull(uploaded)
    assert [(bar.total, bar.n, disabled) for bar, disabled in bars] == [(size, size, False)]


def test_error_answers_raise_their_family_with_the_servers_detail(
    live_hub: LiveHub, hub_client: HubClient, adapter_folder: Path, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match="alice/missing") as missing:
        hub_client.info("alice/missing")
    assert missing.value.status_code == 404 and missing.value.detail
    with (
        live_hub.client(tmp_path / "anonymous") as anonymous,
        pytest.raises(AuthError, match="needs a token") as unauthenticated,
    ):
        anonymous.upload(adapter_folder, EXPERT, description=DESCRIPTION)
    assert unauthenticated.value.status_code == 401
    with pytest.raises(ForbiddenError) as forbidden:
        hub_client.upload(adapter_folder, "bob/qa", description=DESCRIPTION)
    assert forbidden.value.status_code == 403 and isinstance(forbidden.value, AuthError)
    read_only = live_hub.hub.token("alice", read_only=True)
    with (
        live_hub.client(tmp_path / "reader", token=read_only) as reader,
        pytest.raises(ForbiddenError),
    ):
        reader.upload(adapter_folder, EXPERT, description=DESCRIPTION)
    hub_client.upload(adapter_folder, EXPERT, description=DESCRIPTION, parent_revision=0)
    with pytest.raises(ConflictError):
        hub_client.upload(adapter_folder, EXPERT, description=DESCRIPTION, parent_revision=0)


def test_invalid_requests_are_refused_before_anything_is_sent(
    live_hub: LiveHub, hub_client: HubClient, adapter_folder: Path, tmp_path: Path
) -> None:
    with pytest.raises(BadRequestError, match="density"):
        hub_client.upload(adapter_folder, EXPERT, description=DESCRIPTION, density=2.0)
    with pytest.raises(BadRequestError, match="the hub numbers revisions"):
        hub_client.upload(adapter_folder, f"{EXPERT}@3", description=DESCRIPTION)
    with pytest.raises(AdapterFormatError, match="not a PEFT adapter folder"):
        hub_client.upload(tmp_path, EXPERT, description=DESCRIPTION)
    for bad in ("no-slash", "alice/../etc", "alice/qa@-1", "alice/qa@main"):
        with pytest.raises(BadRequestError):
            hub_client.pull(bad)
    with pytest.raises(BadRequestError, match="whole expert"):
        hub_client.delete(f"{EXPERT}@1")
    assert live_hub.recorder.requests == []


def test_references_parse_to_owner_name_and_revision() -> None:
    assert ExpertRef.parse("alice/qa") == ExpertRef("alice", "qa", "latest")
    assert str(ExpertRef.parse("alice/qa@007")) == "alice/qa@7"


def test_deleted_expert_is_not_found(hub_client: HubClient, uploaded: str) -> None:
    hub_client.delete(uploaded)
    with pytest.raises(NotFoundError):
        hub_client.info(uploaded)


def test_5xx_answers_are_retried_then_reported(
    live_hub: LiveHub, hub_client: HubClient, adapter_folder: Path
) -> None:
    live_hub.recorder.faults.unavailable = 2
    assert hub_client.list_experts().total == 0
    assert len(live_hub.recorder.requests) == 3

    live_hub.recorder.faults.unavailable = 1  # an upload answered 503 was not processed
    assert hub_client.upload(adapter_folder, EXPERT, description=DESCRIPTION).revision == 1
    assert live_hub.hub.revision_count() == 1

    live_hub.recorder.faults.unavailable = FAST_RETRIES.attempts
    with pytest.raises(ServerUnavailableError, match="injected outage.*after 3 attempts") as down:
        hub_client.info(EXPERT)
    assert down.value.status_code == 503


def test_a_rate_limited_write_waits_the_hubs_retry_after_then_is_sent_again(
    live_hub: LiveHub, hub_client: HubClient, adapter_folder: Path
) -> None:
    live_hub.recorder.faults.rate_limited = 1
    live_hub.recorder.faults.retry_after_s = 1  # within FAST_RETRIES.max_rate_limit_wait_s
    started = time.monotonic()
    assert hub_client.upload(adapter_folder, EXPERT, description=DESCRIPTION).revision == 1
    assert time.monotonic() - started >= 1.0  # it waited what the hub asked, not the backoff
    assert [r.method for r in live_hub.recorder.requests] == ["POST", "POST"]
    assert live_hub.hub.revision_count() == 1

    live_hub.recorder.faults.rate_limited = FAST_RETRIES.attempts
    live_hub.recorder.faults.retry_after_s = 0
    with pytest.raises(RateLimitedError, match="after 3 attempts") as limited:
        hub_client.upload(adapter_folder, EXPERT, description="second")
    assert limited.value.retry_after_s == 0
    assert live_hub.hub.revision_count() == 1


def test_a_rate_limited_write_raises_at_once_when_the_wait_is_longer_than_the_client_waits(
    live_hub: LiveHub, hub_client: HubClient, adapter_folder: Path
) -> None:
    live_hub.recorder.faults.rate_limited = 1
    wait = f"injected rate limit .retry after {RETRY_AFTER_S} s"
    with pytest.raises(RateLimitedError, match=wait) as limited:
        hub_client.upload(adapter_folder, EXPERT, description=DESCRIPTION)
    assert (limited.value.status_code, limited.value.retry_after_s) == (429, RETRY_AFTER_S)
    assert len(live_hub.recorder.requests) == 1  # not retried: the caller decides when
    assert live_hub.hub.revision_count() == 0
    assert hub_client.upload(adapter_folder, EXPERT, description=DESCRIPTION).revision == 1


def test_environment_variables_configure_the_client(
    live_hub: LiveHub, adapter_folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COMPEFT_HUB_ENDPOINT", live_hub.url)
    monkeypatch.setenv("COMPEFT_HUB_TOKEN", live_hub.hub.token("alice"))
    monkeypatch.setenv("COMPEFT_HUB_CACHE", str(tmp_path / "env-cache"))
    with HubClient() as client:
        client.upload(adapter_folder, EXPERT, description=DESCRIPTION)
        assert client.pull(EXPERT).parent == tmp_path / "env-cache" / "blobs"

    monkeypatch.setenv("COMPEFT_HUB_OFFLINE", "1")
    monkeypatch.setenv("COMPEFT_HUB_DISABLE_PROGRESS_BARS", "1")
    with HubClient(progress=None) as client:
        assert client.offline and not client.progress
