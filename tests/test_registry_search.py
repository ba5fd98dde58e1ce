"""Searching experts by task through the API, with the real embedding model, on every database.

Each app keeps its own index and follows the database's version counter, so these tests also run
two apps on one database (two API processes) and restarted apps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sqlalchemy import delete, event, select, update
from typer.testing import CliRunner

from bench.adapter_files import AdapterFiles, lora_adapter
from registry.cli.main import app as cli
from registry.db.index_log import current_version
from registry.db.models import IndexChange, Revision, RevisionEmbedding
from registry.services.vectors import decode_vector
from retrieval.embedder import TaskEmbedder
from retrieval.limits import MAX_K, MAX_QUERY_EXAMPLES
from tests.fixtures.registry import Hub, auth, open_hub

# Generous: each app checks the counter before every search, so convergence is immediate.
CONVERGENCE_DEADLINE_S = 3.0

EXPERTS: dict[str, dict[str, Any]] = {
    "alice/news": {
        "task_description": "Summarise news articles in two or three sentences.",
        "sample_inputs": [
            "The city council voted on Tuesday to extend the bus network to the airport.",
            "Shares of the carmaker fell 8% after it cut its forecast for the year.",
        ],
        "tags": ["news", "en"],
    },
    "alice/french": {
        "task_description": "Translate English sentences into French.",
        "sample_inputs": ["Where is the train station?", "I would like a cup of coffee."],
        "tags": ["translation", "en"],
    },
    "bob/sql": {
        "task_description": "Write a SQL query that answers a question about a database table.",
        "sample_inputs": [
            "How many customers live in Paris?",
            "List the ten most expensive products.",
        ],
        "tags": ["code"],
    },
    "bob/chemistry": {  # the only IA3 adapter
        "task_description": "Answer questions about chemistry and chemical reactions.",
        "sample_inputs": ["What is the boiling point of ethanol?"],
        "tags": ["science"],
    },
    "carol/sentiment": {  # the only expert of tiny/other
        "task_description": "Classify the sentiment of a movie review as positive or negative.",
        "sample_inputs": ["A dull, overlong film with wooden acting."],
        "tags": ["classification", "en"],
    },
}
LLAMA_EXPERTS = ["alice/news", "alice/french", "bob/sql", "bob/chemistry"]


@pytest.fixture
def blob_store_url(tmp_path: Path) -> str:
    """Search never reads blobs: the local folder is enough."""
    return (tmp_path / "blobs").as_uri()


def ia3_adapter() -> AdapterFiles:
    """A small valid IA3 adapter of tiny/llama."""
    config = {
        "peft_type": "IA3",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": "tiny/llama",
        "target_modules": ["k_proj"],
    }
    generator = torch.Generator().manual_seed(0)
    tensors = {
        f"base_model.model.model.layers.{layer}.self_attn.k_proj.ia3_l": 1
        + 0.1 * torch.randn(16, 1, generator=generator)
        for layer in range(2)
    }
    return AdapterFiles.of(config, tensors)


def adapter_of(expert: str) -> AdapterFiles:
    if expert == "bob/chemistry":
        return ia3_adapter()
    if expert == "carol/sentiment":
        return lora_adapter(seed=5, base_model_name_or_path="tiny/other")
    return lora_adapter(seed=len(expert))


@pytest.fixture
def tokens(hub: Hub) -> dict[str, str]:
    return {user: hub.token(user) for user in ("alice", "bob", "carol")}


def upload(hub: Hub, tokens: dict[str, str], expert: str, **metadata: Any) -> None:
    owner = expert.split("/")[0]
    response = hub.upload(
        expert, adapter_of(expert), token=tokens[owner], metadata={**EXPERTS[expert], **metadata}
    )
    assert response.status_code == 201, response.text


@pytest.fixture
def catalog(hub: Hub, tokens: dict[str, str]) -> dict[str, str]:
    """Every expert of EXPERTS uploaded once; returns the tokens."""
    for expert in EXPERTS:
        upload(hub, tokens, expert)
    return tokens


def search(hub: Hub, **body: Any) -> dict[str, Any]:
    body.setdefault("base_model", "tiny/llama")
    response = hub.client.post("/api/v1/search", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def found(hub: Hub, **body: Any) -> list[str]:
    return [result["id"] for result in search(hub, **body)["results"]]


def eventually(condition: Callable[[], bool]) -> None:
    """Poll `condition` until it holds; fail after CONVERGENCE_DEADLINE_S."""
    deadline = time.monotonic() + CONVERGENCE_DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, "the apps did not converge"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"query": "summarise this news story"}, "alice/news"),
        ({"query": "English to French translation"}, "alice/french"),
        ({"examples": ["Which employees earn more than their manager?"]}, "bob/sql"),
        ({"query": "chemistry", "examples": ["What is the pH of vinegar?"]}, "bob/chemistry"),
    ],
)
def test_the_expert_whose_task_matches_comes_first(
    hub: Hub, catalog: dict[str, str], body: dict[str, Any], expected: str
) -> None:
    answer = search(hub, **body)
    results = answer["results"]
    assert results[0]["id"] == expected
    assert sorted(result["id"] for result in results) == sorted(LLAMA_EXPERTS)
    assert [result["rank"] for result in results] == [1, 2, 3, 4]
    scores = [result["score"] for result in results]
    assert scores == sorted(scores, reverse=True) and -1.0 <= scores[-1] <= scores[0] <= 1.0
    embedder = TaskEmbedder()
    assert answer["embedder"] == {
        "name": embedder.name,
        "version": embedder.version,
        "dim": embedder.dim,
    }


def test_each_result_carries_the_latest_revision_as_the_revision_route_shows_it(
    hub: Hub, catalog: dict[str, str]
) -> None:
    [best] = search(hub, query="summarise this news story", k=1)["results"]
    latest = hub.client.get("/api/v1/experts/alice/news/revisions/latest").json()
    assert best["revision"] == latest


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"base_model": "tiny/other"}, {"carol/sentiment"}),
        ({"peft_type": "ia3"}, {"bob/chemistry"}),
        ({"peft_type": "LORA"}, {"alice/news", "alice/french", "bob/sql"}),
        ({"tags": ["en"]}, {"alice/news", "alice/french"}),
        ({"tags": ["en", "translation"]}, {"alice/french"}),
        ({"tags": ["en"], "peft_type": "IA3"}, set()),
        (
            {"exclude": ["alice/news", "bob/sql", "nobody/unknown"]},
            {"alice/french", "bob/chemistry"},
        ),
    ],
)
def test_filters_select_what_may_be_found(
    hub: Hub, catalog: dict[str, str], filters: dict[str, Any], expected: set[str]
) -> None:
    assert set(found(hub, query="summarise this news story", **filters)) == expected


def test_k_bounds_the_number_of_results(hub: Hub, catalog: dict[str, str]) -> None:
    everything = found(hub, query="summarise this news story")
    assert found(hub, query="summarise this news story", k=2) == everything[:2]
    assert found(hub, query="summarise this news story", k=MAX_K) == everything


def test_a_deleted_expert_is_no_longer_found(hub: Hub, catalog: dict[str, str]) -> None:
    response = hub.client.delete("/api/v1/experts/alice/news", headers=auth(catalog["alice"]))
    assert response.status_code == 204
    assert "alice/news" not in found(hub, query="summarise this news story")


def test_a_new_revision_replaces_the_experts_vector(hub: Hub, catalog: dict[str, str]) -> None:
    upload(
        hub,
        catalog,
        "alice/french",
        task_description="Solve arithmetic word problems step by step.",
        sample_inputs=["Tom has 3 apples and buys 5 more. How many does he have?"],
    )
    results = search(hub, query="solve a maths word problem")["results"]
    assert [result["id"] for result in results].count("alice/french") == 1
    assert results[0]["id"] == "alice/french" and results[0]["revision"]["revision"] == 2
    assert found(hub, query="English to French translation")[0] != "alice/french"


def test_the_upload_stores_a_normalised_embedding_with_its_embedder(
    hub: Hub, tokens: dict[str, str]
) -> None:
    upload(hub, tokens, "alice/news")
    with hub.sessions() as session:
        row = session.scalars(select(RevisionEmbedding)).one()
    embedder = TaskEmbedder()
    assert (row.embedder, row.embedder_version, row.dim) == (
        embedder.name,
        embedder.version,
        embedder.dim,
    )
    expected = embedder.embed_task(
        EXPERTS["alice/news"]["task_description"], EXPERTS["alice/news"]["sample_inputs"]
    )
    np.testing.assert_allclose(decode_vector(row.vector), expected, atol=1e-5)


def test_concurrent_uploads_take_one_version_each_and_are_all_found(
    hub: Hub, tokens: dict[str, str]
) -> None:
    with ThreadPoolExecutor(len(LLAMA_EXPERTS)) as pool:
        list(pool.map(lambda expert: upload(hub, tokens, expert), LLAMA_EXPERTS))
    with hub.sessions() as session:
        assert current_version(session) == len(LLAMA_EXPERTS)
        assert sorted(session.scalars(select(IndexChange.version))) == [1, 2, 3, 4]
    assert sorted(found(hub, query="anything")) == sorted(LLAMA_EXPERTS)


@pytest.fixture
def second_app(hub: Hub) -> Iterator[Hub]:
    """Another API process on the same database and blob store."""
    with open_hub(hub.settings) as other:
        yield other


def test_two_apps_on_one_database_converge(
    hub: Hub, second_app: Hub, tokens: dict[str, str]
) -> None:
    upload(hub, tokens, "carol/sentiment")
    assert found(second_app, base_model="tiny/other", query="movie review") == ["carol/sentiment"]
    upload(second_app, tokens, "alice/news")
    eventually(lambda: found(hub, query="news") == ["alice/news"])
    response = second_app.client.delete("/api/v1/experts/alice/news", headers=auth(tokens["alice"]))
    assert response.status_code == 204
    eventually(
        lambda: (
            hub.client.post(
                "/api/v1/search", json={"query": "news", "base_model": "tiny/llama"}
            ).status_code
            == 404
        )
    )


def test_a_search_that_refreshes_the_index_holds_one_pooled_connection_at_a_time(
    hub: Hub, second_app: Hub, tokens: dict[str, str]
) -> None:
    """Holding the request's connection while the refresh checks out another would let a burst
    of searches exhaust the pool waiting on itself (each holding one, each wanting a second)."""
    upload(second_app, tokens, "alice/news")  # `hub`'s index is now behind the database
    engine = hub.sessions.kw["bind"]
    held = {"now": 0, "peak": 0}

    def on_checkout(*_: Any) -> None:
        held["now"] += 1
        held["peak"] = max(held["peak"], held["now"])

    def on_checkin(*_: Any) -> None:
        held["now"] -= 1

    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "checkin", on_checkin)
    try:
        assert found(hub, query="summarise this news story") == ["alice/news"]
    finally:
        event.remove(engine, "checkout", on_checkout)
        event.remove(engine, "checkin", on_checkin)
    assert held["peak"] == 1


def test_a_restarted_app_rebuilds_its_index_from_sql(hub: Hub, catalog: dict[str, str]) -> None:
    hub.client.delete("/api/v1/experts/bob/sql", headers=auth(catalog["bob"]))
    with open_hub(hub.settings) as restarted:
        assert len(restarted.app.state.search.index) == len(EXPERTS) - 1  # built before any search
        assert found(restarted, query="summarise this news story")[0] == "alice/news"
        assert "bob/sql" not in found(restarted, query="SQL query")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "give a query, at least one example, or both"),
        ({"query": "   "}, "query: String should have at least 1 character"),
        ({"examples": ["fine", " "]}, "examples.1: String should have at least 1 character"),
        ({"query": "x" * 2001}, "query: String should have at most 2000 characters"),
        ({"examples": ["x"] * (MAX_QUERY_EXAMPLES + 1)}, "examples: List should have at most"),
        ({"query": "news", "k": 0}, "k: Input should be greater than or equal to 1"),
        ({"query": "news", "k": MAX_K + 1}, f"k: Input should be less than or equal to {MAX_K}"),
        ({"query": "news", "peft_type": "x" * 33}, "peft_type: String should have at most 32"),
    ],
)
def test_bad_queries_get_422_saying_what_is_wrong(
    hub: Hub, catalog: dict[str, str], body: dict[str, Any], message: str
) -> None:
    response = hub.client.post("/api/v1/search", json={"base_model": "tiny/llama", **body})
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_an_unknown_base_model_gets_404_listing_the_known_ones(
    hub: Hub, catalog: dict[str, str]
) -> None:
    response = hub.client.post("/api/v1/search", json={"query": "news", "base_model": "gpt-9"})
    assert response.status_code == 404
    assert response.json()["detail"] == (
        "no experts for base model 'gpt-9'; known: tiny/llama, tiny/other"
    )


def test_a_malformed_excluded_id_gets_400(hub: Hub, catalog: dict[str, str]) -> None:
    body = {"query": "news", "base_model": "tiny/llama", "exclude": ["alice"]}
    response = hub.client.post("/api/v1/search", json=body)
    assert response.status_code == 400
    assert "invalid expert id 'alice': use owner/name" in response.json()["detail"]


def test_reembed_brings_missing_and_stale_embeddings_back_into_search(
    hub: Hub, catalog: dict[str, str]
) -> None:
    with hub.sessions() as session:  # as after a model change and an upgrade from schema 0001
        news = select(Revision.id).where(Revision.task_description.contains("news articles"))
        session.execute(delete(RevisionEmbedding).where(RevisionEmbedding.revision_id.in_(news)))
        session.execute(update(RevisionEmbedding).values(embedder_version="0.0.1+mean20"))
        session.commit()
    env = {
        "COMPEFT_HUB_DATABASE_URL": hub.settings.sqlalchemy_url,
        "COMPEFT_HUB_BLOB_STORE_URL": hub.settings.storage_url,
    }
    with open_hub(hub.settings) as restarted:  # stale vectors are not served
        response = restarted.client.post(
            "/api/v1/search", json={"query": "news", "base_model": "tiny/llama"}
        )
        assert response.status_code == 404

        result = CliRunner().invoke(cli, ["reembed"], env=env)
        assert result.exit_code == 0, result.output
        assert f"re-embedded {len(EXPERTS)} expert(s)" in result.stdout
        assert "0 already current" in result.stdout
        assert found(restarted, query="summarise this news story")[0] == "alice/news"

    again = CliRunner().invoke(cli, ["reembed"], env=env)
    assert "re-embedded 0 expert(s)" in again.stdout
    assert f"{len(EXPERTS)} already current" in again.stdout
