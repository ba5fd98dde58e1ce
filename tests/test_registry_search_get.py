"""`GET /api/v1/search?q=&base_model=`: the search `POST /api/v1/search` answers, from a URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.adapter_files import lora_adapter
from tests.fixtures.registry import Hub

EXPERTS: dict[str, tuple[str, dict[str, Any]]] = {
    "alice/news": (
        "tiny/llama",
        {"task_description": "Summarise news articles.", "tags": ["news", "en"]},
    ),
    "alice/french": (
        "tiny/llama",
        {
            "task_description": "Translate English sentences into French.",
            "sample_inputs": ["Where is the train station?"],
            "tags": ["translation", "en"],
        },
    ),
    "carol/sentiment": (
        "tiny/other",
        {"task_description": "Classify the sentiment of a movie review.", "tags": ["en"]},
    ),
}
# The query parameter of each body field that is named otherwise.
PARAMETER = {"query": "q", "examples": "input", "tags": "tag"}
ALLOWED = "base_model, base_model_variant, dataset, exclude, input, k, license, peft_type, q, tag"


@pytest.fixture
def blob_store_url(tmp_path: Path) -> str:
    """Search never reads blobs: the local folder is enough."""
    return (tmp_path / "blobs").as_uri()


@pytest.fixture
def catalog(hub: Hub) -> None:
    tokens = {owner: hub.token(owner) for owner in ("alice", "carol")}
    for seed, (expert, (base_model, metadata)) in enumerate(EXPERTS.items()):
        adapter = lora_adapter(seed=seed, base_model_name_or_path=base_model)
        response = hub.upload(
            expert, adapter, token=tokens[expert.split("/")[0]], metadata=metadata
        )
        assert response.status_code == 201, response.text


def as_query(body: dict[str, Any]) -> dict[str, Any]:
    return {PARAMETER.get(field, field): value for field, value in body.items()}


@pytest.mark.parametrize(
    "body",
    [
        {"query": "summarise this news story", "base_model": "tiny/llama"},
        {
            "query": "translate",
            "examples": ["Good morning", "Where is the museum?"],
            "base_model": "tiny/llama",
            "peft_type": "lora",
            "tags": ["en", "translation"],
            "exclude": ["alice/news"],
            "k": 1,
        },
        {"examples": ["A dull, overlong film."], "base_model": "tiny/other", "k": 5},
    ],
)
def test_get_answers_what_post_answers(hub: Hub, catalog: None, body: dict[str, Any]) -> None:
    posted = hub.client.post("/api/v1/search", json=body)
    got = hub.client.get("/api/v1/search", params=as_query(body))
    assert posted.status_code == got.status_code == 200, got.text
    assert got.json() == posted.json()
    assert got.json()["results"]


@pytest.mark.parametrize(
    ("body", "posted_at", "got_at"),
    [
        ({"query": "news"}, "body.base_model", "query.base_model"),
        ({"base_model": "tiny/llama"}, "body", "query"),  # neither query nor examples
        ({"query": "news", "base_model": "tiny/llama", "k": 0}, "body.k", "query.k"),
        (
            {"examples": ["fine", " "], "base_model": "tiny/llama"},
            "body.examples.1",
            "query.input.1",
        ),
        ({"query": " ", "base_model": "tiny/llama"}, "body.query", "query.q"),
        (
            {"query": "news", "base_model": "tiny/llama", "tags": ["a!"]},
            "body.tags.0",
            "query.tag.0",
        ),
    ],
)
def test_get_refuses_what_post_refuses_naming_the_parameter(
    hub: Hub, catalog: None, body: dict[str, Any], posted_at: str, got_at: str
) -> None:
    posted = hub.client.post("/api/v1/search", json=body)
    got = hub.client.get("/api/v1/search", params=as_query(body))
    assert posted.status_code == got.status_code == 422
    posted_detail = posted.json()["detail"]
    assert posted_detail.startswith(f"invalid request: {posted_at}: ")
    assert got.json() == {"detail": posted_detail.replace(posted_at, got_at, 1)}


def test_an_unknown_base_model_gets_the_same_404(hub: Hub, catalog: None) -> None:
    body = {"query": "news", "base_model": "gpt-9"}
    got = hub.client.get("/api/v1/search", params=as_query(body))
    assert got.status_code == 404
    assert got.json() == hub.client.post("/api/v1/search", json=body).json()


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        (
            {"q": "news", "base_model": "tiny/llama", "query": "news"},
            f"invalid request: query: unknown parameter 'query'; allowed: {ALLOWED}",
        ),
        (
            {"q": "news", "base_model": "tiny/llama", "k": "many"},
            "invalid request: query.k: Input should be a valid integer, unable to parse string as an integer",
        ),
    ],
)
def test_unknown_or_malformed_parameters_get_422(
    hub: Hub, params: dict[str, str], detail: str
) -> None:
    response = hub.client.get("/api/v1/search", params=params)
    assert response.status_code == 422
    assert response.json() == {"detail": detail}
