"""End to end over real HTTP: uvicorn on a loopback port, SeaweedFS S3, SQLite or PostgreSQL.

A real peft LoRA adapter (tiny Llama) is uploaded, its blob downloaded and decoded, and the
tensors compared with the ComPEFT formula (tests/compeft_reference.py: alpha * sigma * sign(x) on
the round(density * n) largest |x|, sigma the population std) applied to the uploaded weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import load_file

from bench.adapter_files import DEFAULT_METADATA, AdapterFiles, lora_adapter
from bench.seaweedfs import SeaweedS3
from compeft_core import CompressedExpert
from registry.api.app import create_app
from tests.compeft_reference import reference_decompress, reference_fidelity
from tests.fixtures.registry import Hub, auth, s3_store_url, served_over_http

DENSITY = 0.25
ALPHA = 1.5


@pytest.fixture(scope="module")
def peft_adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`save_pretrained` of a LoRA on a tiny random Llama (hidden 64, 2 layers, vocab 128)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=128,
    )
    config.name_or_path = "test/tiny-llama"  # recorded as base_model_name_or_path
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    folder = tmp_path_factory.mktemp("peft-adapter")
    model = get_peft_model(LlamaForCausalLM(config), lora)
    model.save_pretrained(
        str(folder), save_embedding_layers=False
    )  # no lookup of the base on the Hub
    return folder


@pytest.fixture
def blob_store_url(s3_server: SeaweedS3, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """End to end means the production setup: S3."""
    return s3_store_url(s3_server, s3_bucket, monkeypatch)


@pytest.fixture
def base_url(hub: Hub) -> Iterator[str]:
    """A second app on the same database and bucket, served by uvicorn over TCP."""
    with served_over_http(create_app(hub.settings)) as url:
        yield url


def post_revision(
    base_url: str, expert: str, adapter: AdapterFiles, token: str, metadata: dict[str, object]
) -> httpx.Response:
    return httpx.post(
        f"{base_url}/api/v1/experts/{expert}/revisions",
        files={
            "adapter_config.json": ("adapter_config.json", adapter.config),
            "adapter_model.safetensors": ("adapter_model.safetensors", adapter.weights),
        },
        data={"metadata": json.dumps(metadata)},
        headers=auth(token),
        timeout=60,
    )


def race(base_url: str, token: str, metadata: dict[str, object]) -> list[httpx.Response]:
    """Four different adapters uploaded to alice/race at the same time."""
    with ThreadPoolExecutor(4) as pool:
        return list(
            pool.map(
                lambda seed: post_revision(
                    base_url, "alice/race", lora_adapter(seed=seed), token, metadata
                ),
                range(4),
            )
        )


@pytest.mark.parametrize(
    ("choices", "tolerance"),
    [
        (
            {"factorisation": "as-trained", "scale": "entry", "alpha": ALPHA},
            0,
        ),  # the paper's, exact
        ({}, 1e-5),
    ],  # the hub's defaults; the reference's SVD differs in the last float32 bits
    ids=["paper", "default"],
)
def test_real_peft_adapter_round_trips_through_the_hub(
    hub: Hub, base_url: str, peft_adapter_dir: Path, choices: dict, tolerance: float
) -> None:
    metadata = {**DEFAULT_METADATA, "density": DENSITY, **choices}
    token = hub.token("alice")
    adapter = AdapterFiles(
        (peft_adapter_dir / "adapter_config.json").read_bytes(),
        (peft_adapter_dir / "adapter_model.safetensors").read_bytes(),
    )
    created = post_revision(base_url, "alice/tiny-llama-qa", adapter, token, metadata)
    assert created.status_code == 201, created.text
    assert created.json()["compression_ratio"] > 1

    blob_url = f"{base_url}/api/v1/experts/alice/tiny-llama-qa/revisions/latest/blob"
    download = httpx.get(blob_url, timeout=60, follow_redirects=True)  # latest -> revision 1
    assert download.status_code == 200
    blob = download.content
    assert download.headers["etag"] == f'"{hashlib.sha256(blob).hexdigest()}"'
    resumed = httpx.get(
        blob_url, headers={"Range": "bytes=100-"}, timeout=60, follow_redirects=True
    )
    assert resumed.status_code == 206
    assert blob[:100] + resumed.content == blob

    decoded = CompressedExpert.from_bytes(blob).decompress(dtype=torch.float32)
    uploaded = load_file(peft_adapter_dir / "adapter_model.safetensors")
    factorisation, scale = (
        choices.get("factorisation", "balanced"),
        choices.get("scale", "unbiased"),
    )
    expected = reference_decompress(
        uploaded, DENSITY, "tensor", choices.get("alpha"), torch.float32, factorisation, scale
    )
    assert decoded.keys() == expected.keys() == uploaded.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(decoded[name], tensor, rtol=tolerance, atol=0)

    detail = httpx.get(f"{base_url}/api/v1/experts/alice/tiny-llama-qa/revisions/1").json()
    assert detail["base_model"] == "test/tiny-llama"
    assert (detail["rank"], detail["lora_alpha"], detail["num_params"]) == (4, 8.0, 2048)
    assert (detail["factorisation"], detail["scale"]) == (
        factorisation,
        "fixed" if "alpha" in choices else scale,
    )
    assert detail["fidelity"] == created.json()["fidelity"]
    figures = reference_fidelity(uploaded, decoded).values()
    errors, cosines = [f[0] for f in figures], [f[1] for f in figures]
    for name, values in (("cosine", cosines), ("relative_error", errors)):
        summary = detail["fidelity"][name]
        assert summary["min"] == pytest.approx(min(values), rel=1e-6)
        assert summary["max"] == pytest.approx(max(values), rel=1e-6)
        assert summary["mean"] == pytest.approx(sum(values) / len(values), rel=1e-6)


def test_concurrent_uploads_get_consecutive_revision_numbers(hub: Hub, base_url: str) -> None:
    responses = race(base_url, hub.token("alice"), DEFAULT_METADATA)
    assert [response.status_code for response in responses] == [201] * 4
    assert sorted(response.json()["revision"] for response in responses) == [1, 2, 3, 4]
    assert len(hub.blob_keys()) == 4


def test_racing_uploads_on_one_parent_leave_one_winner_and_no_loser_blobs(
    hub: Hub, base_url: str
) -> None:
    responses = race(base_url, hub.token("alice"), {**DEFAULT_METADATA, "parent_revision": 0})
    assert sorted(response.status_code for response in responses) == [201, 409, 409, 409]
    winner = next(response.json() for response in responses if response.status_code == 201)
    assert hub.revision_count() == 1
    assert hub.blob_keys() == {winner["blob_sha256"]}
