"""Uploading revisions: what is stored and what is answered."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from bench.adapter_files import DEFAULT_METADATA, AdapterFiles, lora_adapter
from compeft_core import CompressedExpert
from tests.fixtures.registry import Hub, auth

pytestmark = pytest.mark.usefixtures("no_leftover_upload_files")


@pytest.fixture
def alice(hub: Hub) -> str:
    return hub.token("alice")


def test_upload_answers_201_with_sizes_and_ratio(hub: Hub, alice: str) -> None:
    adapter = lora_adapter()
    response = hub.upload("alice/trivia", adapter, token=alice)
    assert response.status_code == 201, response.text
    body = response.json()
    blob = hub.store.get_bytes(body["blob_sha256"])
    assert hashlib.sha256(blob).hexdigest() == body["blob_sha256"]
    assert body["id"] == "alice/trivia"
    assert body["revision"] == 1
    assert body["blob_bytes"] == len(blob)
    assert body["original_bytes"] == len(adapter.weights)
    assert body["compression_ratio"] == pytest.approx(len(adapter.weights) / len(blob))
    # Against the adapter in fp16, 2 bytes a parameter, whatever the file's dtype (float32 here).
    assert body["compression_ratio_fp16"] == pytest.approx(2 * body["num_params"] / len(blob))
    assert body["bits_per_param"] == pytest.approx(8 * len(blob) / body["num_params"])
    assert body["num_params"] == 2 * 2 * (4 * 16 + 16 * 4)
    assert (body["density"], body["scope"]) == (0.1, "tensor")
    assert (body["factorisation"], body["scale"]) == ("balanced", "unbiased")
    for figure in ("cosine", "relative_error"):
        summary = body["fidelity"][figure]
        assert 0 < summary["min"] <= summary["mean"] <= summary["max"]
    assert body["fidelity"]["cosine"]["max"] <= 1


def test_upload_chooses_factorisation_and_scale(hub: Hub, alice: str) -> None:
    metadata = {**DEFAULT_METADATA, "factorisation": "as-trained", "scale": "entry"}
    body = hub.upload("alice/trivia", lora_adapter(), token=alice, metadata=metadata).json()
    expert = CompressedExpert.from_bytes(hub.store.get_bytes(body["blob_sha256"]))
    assert (expert.factorisation, expert.scale) == ("as-trained", "entry")
    assert (body["factorisation"], body["scale"]) == ("as-trained", "entry")
    default = hub.upload("alice/trivia", lora_adapter(), token=alice).json()
    assert default["blob_sha256"] != body["blob_sha256"]


def test_revision_records_the_adapter_and_the_metadata(hub: Hub, alice: str) -> None:
    adapter = lora_adapter()
    hub.upload("alice/trivia", adapter, token=alice)
    detail = hub.client.get("/api/v1/experts/alice/trivia/revisions/1").json()
    assert detail["adapter_config"] == json.loads(adapter.config)
    assert detail["base_model"] == "tiny/llama"
    assert (detail["peft_type"], detail["rank"], detail["lora_alpha"]) == ("LORA", 4, 8.0)
    assert detail["target_modules"] == ["q_proj", "v_proj"]
    assert detail["original_dtype"] == "float32"
    assert detail["task_description"] == DEFAULT_METADATA["task_description"]
    assert detail["sample_inputs"] == DEFAULT_METADATA["sample_inputs"]
    assert detail["tags"] == sorted(DEFAULT_METADATA["tags"])
    assert 0 < detail["sigma"]["min"] <= detail["sigma"]["mean"] <= detail["sigma"]["max"]
    assert detail["blob_missing"] is False


def test_upload_uses_density_scope_and_alpha_from_metadata(hub: Hub, alice: str) -> None:
    metadata = {**DEFAULT_METADATA, "density": 0.25, "scope": "global", "alpha": 1.5}
    body = hub.upload("alice/trivia", lora_adapter(), token=alice, metadata=metadata).json()
    expert = CompressedExpert.from_bytes(hub.store.get_bytes(body["blob_sha256"]))
    assert (expert.density, expert.scope) == (0.25, "global")
    assert set(expert.default_alphas.values()) == {1.5}
    assert (body["density"], body["scope"]) == (0.25, "global")
    assert (body["factorisation"], body["scale"]) == ("balanced", "fixed")


def test_ia3_adapter_is_compressed_relative_to_ones(hub: Hub, alice: str) -> None:
    tensors = {
        f"base_model.model.model.layers.{i}.mlp.down_proj.ia3_l": torch.ones(1, 32) + 0.01 * i
        for i in range(2)
    }
    config = {"peft_type": "IA3", "target_modules": ["down_proj"], "base_model_name_or_path": "b"}
    response = hub.upload("alice/ia3", AdapterFiles.of(config, tensors), token=alice)
    assert response.status_code == 201, response.text
    detail = hub.client.get("/api/v1/experts/alice/ia3/revisions/latest").json()
    assert (detail["peft_type"], detail["rank"], detail["lora_alpha"]) == ("IA3", None, None)
    # No LoRA pair: the paper's path. Fidelity is of each vector's change from one: layer 0
    # has none (exact), layer 1 a constant change, whose sigma is 0, so ComPEFT loses it.
    assert (detail["factorisation"], detail["scale"]) == ("as-trained", "entry")
    assert detail["fidelity"]["cosine"] == {"min": 0.0, "mean": 0.5, "max": 1.0}
    assert detail["fidelity"]["relative_error"] == {"min": 0.0, "mean": 0.5, "max": 1.0}


def test_stale_parent_revision_conflicts_and_removes_its_blob(hub: Hub, alice: str) -> None:
    first = hub.upload("alice/trivia", lora_adapter(seed=1), token=alice).json()
    stale = {**DEFAULT_METADATA, "parent_revision": 0}
    response = hub.upload("alice/trivia", lora_adapter(seed=2), token=alice, metadata=stale)
    assert response.status_code == 409
    assert "latest revision of alice/trivia is 1" in response.json()["detail"]
    assert hub.revision_count() == 1
    assert hub.blob_keys() == {first["blob_sha256"]}


def test_failed_commit_keeps_a_blob_other_revisions_use(hub: Hub, alice: str) -> None:
    first = hub.upload("alice/one", lora_adapter(), token=alice).json()
    stale = {**DEFAULT_METADATA, "parent_revision": 3}
    assert hub.upload("alice/two", lora_adapter(), token=alice, metadata=stale).status_code == 409
    assert hub.blob_keys() == {first["blob_sha256"]}
    assert hub.store.get_bytes(first["blob_sha256"])


def test_matching_parent_revision_is_accepted(hub: Hub, alice: str) -> None:
    for parent in (0, 1):
        metadata = {**DEFAULT_METADATA, "parent_revision": parent}
        response = hub.upload(
            "alice/trivia", lora_adapter(seed=parent), token=alice, metadata=metadata
        )
        assert response.json()["revision"] == parent + 1


def test_upload_after_delete_starts_a_new_expert(hub: Hub, alice: str) -> None:
    hub.upload("alice/trivia", lora_adapter(seed=1), token=alice)
    hub.upload("alice/trivia", lora_adapter(seed=2), token=alice)
    assert hub.client.delete("/api/v1/experts/alice/trivia", headers=auth(alice)).status_code == 204
    assert hub.upload("alice/trivia", lora_adapter(seed=3), token=alice).json()["revision"] == 3
    expert = hub.client.get("/api/v1/experts/alice/trivia").json()
    assert [row["revision"] for row in expert["revisions"]] == [3]
    assert (expert["revision_count"], expert["latest"]["revision"]) == (1, 3)
