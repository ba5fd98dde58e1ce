"""Tags as people write them: one tag whatever its capitals, spaces as `-`, refusals in words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.adapter_files import DEFAULT_METADATA, lora_adapter
from tests.fixtures.registry import Hub

BASE_MODEL = "tiny/llama"


@pytest.fixture
def blob_store_url(tmp_path: Path) -> str:
    """Tags never touch blobs: the local folder is enough."""
    return (tmp_path / "blobs").as_uri()


def upload(hub: Hub, expert: str, tags: list[str]) -> Any:
    metadata = {**DEFAULT_METADATA, "tags": tags}
    return hub.upload(expert, lora_adapter(seed=1), token=hub.token("alice"), metadata=metadata)


def test_tags_are_stored_lower_case_with_dashes_for_spaces(hub: Hub) -> None:
    created = upload(hub, "alice/qa", ["Question  Answering", " Summarization ", "summarization"])
    assert created.status_code == 201, created.text
    detail = hub.client.get("/api/v1/experts/alice/qa/revisions/latest").json()
    assert sorted(detail["tags"]) == ["question-answering", "summarization"]


@pytest.mark.parametrize("spelling", ["SUMMARIZATION", "Summarization", "summarization"])
def test_listing_and_search_find_a_tag_in_any_capitals(hub: Hub, spelling: str) -> None:
    assert upload(hub, "alice/qa", ["Summarization"]).status_code == 201
    assert upload(hub, "alice/other", ["poetry"]).status_code == 201
    listed = hub.client.get("/api/v1/experts", params={"tag": spelling}).json()
    assert [item["id"] for item in listed["items"]] == ["alice/qa"]
    found = hub.client.post(
        "/api/v1/search", json={"query": "anything", "base_model": BASE_MODEL, "tags": [spelling]}
    ).json()
    assert [result["id"] for result in found["results"]] == ["alice/qa"]
    page = hub.client.get("/experts", params={"tag": spelling}).text
    assert "alice/qa" in page and "alice/other" not in page


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("a/b", "a tag may hold letters, digits and the characters - _ . : only"),
        ("x" * 65, "a tag has 1 to 64 characters, got 65"),
        ("   ", "a tag has 1 to 64 characters, got 0"),
    ],
    ids=["slash", "long", "blank"],
)
def test_a_bad_tag_is_refused_with_what_is_allowed_in_words(
    hub: Hub, tag: str, message: str
) -> None:
    response = upload(hub, "alice/qa", [tag])
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert hub.client.get("/api/v1/experts").json()["total"] == 0
