"""`GET /api/v1/experts?q=&sort=`: text search and order of the listing, and unknown parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.adapter_files import lora_adapter
from tests.fixtures.registry import Hub

# Uploaded in this order; alice/Trivia's second revision comes last, so `recent` puts it first.
UPLOADS: list[tuple[str, dict[str, Any]]] = [
    ("alice/Trivia", {"task_description": "Answer trivia questions.", "tags": ["qa", "legacy"]}),
    ("alice/discount", {"task_description": "Work out a 10% discount.", "tags": ["math"]}),
    ("bob/poems", {"task_description": "Write short poems about the coast.", "tags": ["poetry"]}),
    ("bob/snake_case", {"task_description": "Rename identifiers.", "tags": ["code"]}),
    ("alice/Trivia", {"task_description": "Answer trivia questions.", "tags": ["qa"]}),
]
ALLOWED = "base_model, base_model_variant, dataset, license, limit, offset, owner, peft_type, q, sort, tag"


@pytest.fixture
def blob_store_url(tmp_path: Path) -> str:
    """Listing never reads blobs: the local folder is enough."""
    return (tmp_path / "blobs").as_uri()


@pytest.fixture
def catalog(hub: Hub) -> None:
    tokens = {owner: hub.token(owner) for owner in ("alice", "bob")}
    for seed, (expert, metadata) in enumerate(UPLOADS):
        owner = expert.split("/")[0]
        response = hub.upload(
            expert, lora_adapter(seed=seed), token=tokens[owner], metadata=metadata
        )
        assert response.status_code == 201, response.text


def page(hub: Hub, **params: str | int) -> dict[str, Any]:
    response = hub.client.get("/api/v1/experts", params=params)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def listed(hub: Hub, **params: str | int) -> list[str]:
    return [item["id"] for item in page(hub, **params)["items"]]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("bob/", ["bob/poems", "bob/snake_case"]),  # owner/name
        ("TRIVIA", ["alice/Trivia"]),  # name and description, capitals aside
        ("identifiers", ["bob/snake_case"]),  # description only
        ("POETRY", ["bob/poems"]),  # a tag only
        ("legacy", []),  # a tag of an older revision
        ("%", ["alice/discount"]),  # a wildcard would match all
        ("e_c", ["bob/snake_case"]),  # a wildcard would match "the coast" too
        ("", ["alice/Trivia", "alice/discount", "bob/poems", "bob/snake_case"]),
    ],
)
def test_q_finds_text_in_name_description_or_tag(
    hub: Hub, catalog: None, q: str, expected: list[str]
) -> None:
    assert listed(hub, q=q) == expected


def test_q_combines_with_the_filters(hub: Hub, catalog: None) -> None:
    assert listed(hub, q="o", owner="alice", tag="math") == ["alice/discount"]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("created", ["alice/Trivia", "alice/discount", "bob/poems", "bob/snake_case"]),
        ("recent", ["alice/Trivia", "bob/snake_case", "bob/poems", "alice/discount"]),
        ("name", ["alice/discount", "alice/Trivia", "bob/poems", "bob/snake_case"]),
    ],
)
def test_sort_orders_the_listing(hub: Hub, catalog: None, sort: str, expected: list[str]) -> None:
    assert listed(hub, sort=sort) == expected


def test_the_default_order_is_oldest_first(hub: Hub, catalog: None) -> None:
    assert listed(hub) == listed(hub, sort="created")


def test_pages_follow_q_and_sort(hub: Hub, catalog: None) -> None:
    recent = page(hub, sort="recent", limit=2, offset=1)
    assert [item["id"] for item in recent["items"]] == ["bob/snake_case", "bob/poems"]
    assert recent["total"] == 4
    found = page(hub, q="bob", sort="name", limit=1, offset=1)
    assert [item["id"] for item in found["items"]] == ["bob/snake_case"]
    assert (found["total"], found["limit"], found["offset"]) == (2, 1, 1)


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        (
            {"sort_by": "name"},
            f"invalid request: query: unknown parameter 'sort_by'; allowed: {ALLOWED}",
        ),
        (
            {"query": "x", "page": 2},
            f"invalid request: query: unknown parameters 'query', 'page'; allowed: {ALLOWED}",
        ),
        (
            {"sort": "newest"},
            "invalid request: query.sort: Input should be 'created', 'recent' or 'name'",
        ),
        ({"q": "x" * 257}, "invalid request: query.q: String should have at most 256 characters"),
        (
            {"q": "a\x00b"},
            "invalid request: query.q: Value error, control characters are not allowed",
        ),
    ],
)
def test_unknown_parameters_and_bad_values_get_422(
    hub: Hub, params: dict[str, str], detail: str
) -> None:
    response = hub.client.get("/api/v1/experts", params=params)
    assert response.status_code == 422
    assert response.json() == {"detail": detail}


def test_the_spec_lists_the_sort_choices(hub: Hub) -> None:
    spec = hub.client.get("/openapi.json").json()
    parameters = spec["paths"]["/api/v1/experts"]["get"]["parameters"]
    sort = next(parameter for parameter in parameters if parameter["name"] == "sort")
    assert sort["schema"]["default"] == "created"
    schema = spec["components"]["schemas"][sort["schema"]["$ref"].rsplit("/", 1)[1]]
    assert schema["enum"] == ["created", "recent", "name"]
