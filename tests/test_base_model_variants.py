"""Which variant of its base model an expert was trained on (full precision, or a quantised copy
as QLoRA experts are): recorded from the upload, answered, shown, and a filter of listing and
search."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.adapter_files import DEFAULT_METADATA, lora_adapter
from tests.fixtures.live_hub import RunCli
from tests.fixtures.registry import Hub
from tests.test_client_cli import upload


def upload_variant(hub: Hub, expert: str, variant: str | None, seed: int) -> dict[str, object]:
    metadata = {**DEFAULT_METADATA, **({} if variant is None else {"base_model_variant": variant})}
    response = hub.upload(
        expert, lora_adapter(seed=seed), token=hub.token(expert.split("/")[0]), metadata=metadata
    )
    assert response.status_code == 201, response.text
    detail = hub.client.get(f"/api/v1/experts/{expert}/revisions/latest").json()
    return detail


def test_the_variant_is_recorded_filtered_and_searched(hub: Hub) -> None:
    assert upload_variant(hub, "alice/full", "Full-Precision", 1)["base_model_variant"] == (
        "full-precision"
    )
    assert upload_variant(hub, "alice/qlora", "rtn-4bit-g128", 2)["base_model_variant"] == (
        "rtn-4bit-g128"
    )
    assert upload_variant(hub, "alice/unsaid", None, 3)["base_model_variant"] is None

    def listed(variant: str) -> list[str]:
        page = hub.client.get("/api/v1/experts", params={"base_model_variant": variant})
        assert page.status_code == 200, page.text
        return [item["id"] for item in page.json()["items"]]

    def searched(variant: str | None) -> list[str]:
        body = {"query": "trivia", "base_model": "tiny/llama", "base_model_variant": variant}
        answer = hub.client.post("/api/v1/search", json={k: v for k, v in body.items() if v})
        assert answer.status_code == 200, answer.text
        return sorted(hit["id"] for hit in answer.json()["results"])

    assert listed("RTN-4bit-g128") == ["alice/qlora"]
    assert listed("full-precision") == ["alice/full"]
    assert searched(None) == ["alice/full", "alice/qlora", "alice/unsaid"]
    assert searched("rtn-4bit-g128") == ["alice/qlora"]
    got = hub.client.get(
        "/api/v1/search",
        params={"q": "trivia", "base_model": "tiny/llama", "base_model_variant": "full-precision"},
    )
    assert [hit["id"] for hit in got.json()["results"]] == ["alice/full"]
    page = hub.client.get("/experts/alice/qlora").text
    assert '<dt>Trained on</dt><dd class="variant">rtn-4bit-g128</dd>' in page
    assert "Trained on</dt>" not in hub.client.get("/experts/alice/unsaid").text


@pytest.mark.parametrize("variant", ["4 bit", "nf4--x", "-nf4", "x" * 65])
def test_a_bad_variant_is_refused(hub: Hub, variant: str) -> None:
    metadata = {**DEFAULT_METADATA, "base_model_variant": variant}
    response = hub.upload(
        "alice/trivia", lora_adapter(), token=hub.token("alice"), metadata=metadata
    )
    assert response.status_code == 422 and "base_model_variant" in response.json()["detail"]
    assert hub.revision_count() == 0


def test_another_variant_is_a_new_revision(hub: Hub) -> None:
    upload_variant(hub, "alice/trivia", "nf4", 1)
    again = upload_variant(hub, "alice/trivia", "full-precision", 1)
    assert again["revision"] == 2


def test_cli_records_shows_and_filters_the_variant(
    hub_cli: RunCli, peft_adapter_folders: list[Path]
) -> None:
    upload(hub_cli, peft_adapter_folders[0], "alice/qa", "--base-model-variant", "nf4")
    upload(hub_cli, peft_adapter_folders[1], "alice/full", "--base-model-variant", "full-precision")
    assert ", trained on nf4" in hub_cli("info", "alice/qa").stdout
    listed = hub_cli("list", "--base-model-variant", "nf4").stdout
    assert "alice/qa@1" in listed and "alice/full" not in listed
    found = hub_cli("search", "trivia", "--base-model-variant", "full-precision")
    assert found.exit_code == 0, found.output
    assert "alice/full@1" in found.stdout and "alice/qa" not in found.stdout
