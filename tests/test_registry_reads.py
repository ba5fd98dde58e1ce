"""Listing, showing and deleting experts; reads never show deleted experts."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.adapter_files import DEFAULT_METADATA, lora_adapter
from tests.fixtures.registry import Hub, auth


@pytest.fixture
def blob_store_url(tmp_path: Path) -> str:
    """Reads do not touch blobs: the local folder only (uploads and downloads run on S3 too)."""
    return (tmp_path / "blobs").as_uri()


@pytest.fixture
def catalog(hub: Hub) -> dict[str, str]:
    """alice/trivia (2 revisions), alice/math (other base model), bob/poems (other tags)."""
    tokens = {"alice": hub.token("alice"), "bob": hub.token("bob")}
    hub.upload("alice/trivia", lora_adapter(seed=1), token=tokens["alice"])
    retagged = {**DEFAULT_METADATA, "tags": ["qa", "v2"]}
    hub.upload("alice/trivia", lora_adapter(seed=2), token=tokens["alice"], metadata=retagged)
    math = lora_adapter(seed=3, base_model_name_or_path="tiny/other")
    hub.upload("alice/math", math, token=tokens["alice"])
    poems = {**DEFAULT_METADATA, "tags": ["poetry"]}
    hub.upload("bob/poems", lora_adapter(seed=4), token=tokens["bob"], metadata=poems)
    return tokens


def listed(hub: Hub, **params: str | int) -> list[str]:
    response = hub.client.get("/api/v1/experts", params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["alice/trivia", "alice/math", "bob/poems"]),
        ({"owner": "alice"}, ["alice/trivia", "alice/math"]),
        ({"base_model": "tiny/other"}, ["alice/math"]),
        ({"peft_type": "lora"}, ["alice/trivia", "alice/math", "bob/poems"]),
        ({"peft_type": "IA3"}, []),
        ({"tag": "poetry"}, ["bob/poems"]),
        ({"tag": "v2"}, ["alice/trivia"]),
        ({"tag": "en"}, ["alice/math"]),  # alice/trivia's latest revision dropped "en"
        ({"owner": "carol"}, []),
    ],
)
def test_list_filters_on_latest_revision(
    hub: Hub, catalog: dict[str, str], params: dict[str, str], expected: list[str]
) -> None:
    assert listed(hub, **params) == expected


def test_list_pages_with_total(hub: Hub, catalog: dict[str, str]) -> None:
    page = hub.client.get("/api/v1/experts", params={"limit": 2, "offset": 1}).json()
    assert [item["id"] for item in page["items"]] == ["alice/math", "bob/poems"]
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)
    assert page["items"][0]["latest"]["revision"] == 1


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"offset": -1}])
def test_list_refuses_bad_pagination(hub: Hub, params: dict[str, int]) -> None:
    response = hub.client.get("/api/v1/experts", params=params)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(f"invalid request: query.{next(iter(params))}")


def test_expert_shows_every_revision(hub: Hub, catalog: dict[str, str]) -> None:
    expert = hub.client.get("/api/v1/experts/alice/trivia").json()
    assert [row["revision"] for row in expert["revisions"]] == [1, 2]
    assert expert["latest"]["revision"] == expert["revision_count"] == 2
    assert expert["latest"]["tags"] == ["qa", "v2"]


@pytest.mark.parametrize(("reference", "number"), [("1", 1), ("2", 2), ("latest", 2)])
def test_revision_by_number_or_latest(
    hub: Hub, catalog: dict[str, str], reference: str, number: int
) -> None:
    response = hub.client.get(f"/api/v1/experts/alice/trivia/revisions/{reference}")
    assert response.status_code == 200
    assert response.json()["revision"] == number


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/experts/alice/nothing", 404),
        ("/api/v1/experts/carol/trivia", 404),
        ("/api/v1/experts/alice/trivia/revisions/3", 404),
        ("/api/v1/experts/alice/trivia/revisions/3/blob", 404),
        ("/api/v1/experts/alice/trivia/revisions/0", 400),
        ("/api/v1/experts/alice/trivia/revisions/-1", 400),
        ("/api/v1/experts/alice/trivia/revisions/head", 400),
        ("/api/v1/experts/alice/trivia/revisions/99999999999999999999", 400),
        ("/api/v1/experts/alice/..trivia", 400),
    ],
)
def test_unknown_or_invalid_references_answer_4xx(
    hub: Hub, catalog: dict[str, str], path: str, status: int
) -> None:
    response = hub.client.get(path)
    assert response.status_code == status
    assert response.json()["detail"]


def test_deleted_expert_disappears_from_every_read(hub: Hub, catalog: dict[str, str]) -> None:
    response = hub.client.delete("/api/v1/experts/alice/trivia", headers=auth(catalog["alice"]))
    assert response.status_code == 204
    for path in ("", "/revisions/1", "/revisions/latest", "/revisions/1/blob"):
        assert hub.client.get(f"/api/v1/experts/alice/trivia{path}").status_code == 404
    assert listed(hub) == ["alice/math", "bob/poems"]
    again = hub.client.delete("/api/v1/experts/alice/trivia", headers=auth(catalog["alice"]))
    assert again.status_code == 404


@pytest.mark.parametrize(("who", "status"), [("bob", 403), ("read-only", 403), ("nobody", 401)])
def test_only_the_owner_can_delete(
    hub: Hub, catalog: dict[str, str], who: str, status: int
) -> None:
    token = {"bob": catalog["bob"], "read-only": hub.token("alice", read_only=True), "nobody": None}
    response = hub.client.delete("/api/v1/experts/alice/trivia", headers=auth(token[who]))
    assert response.status_code == status
    assert hub.client.get("/api/v1/experts/alice/trivia").status_code == 200


def test_health_and_docs_are_served(hub: Hub) -> None:
    assert hub.client.get("/healthz").json() == {"status": "ok"}
    assert hub.client.get("/docs").status_code == 200
    paths = hub.client.get("/openapi.json").json()["paths"]
    assert "/api/v1/experts/{owner}/{name}/revisions" in paths
