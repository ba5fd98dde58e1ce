"""The search's fused score through the API: the second stage, its parts, old rows and reembed.

The two Chinese experts share their description and differ only in script (simplified vs
traditional), as tasks of the real-task set do: the dense model prefers the wrong one for a query
in traditional characters, and the n-gram part must put the right one first. The translation and
opinion experts are told apart by their descriptions while their inputs mislead: a query in words
about film reviews finds the translator of film reviews first by the dense part, and the
description part must put the opinion expert first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from bench.adapter_files import lora_adapter
from registry.cli.main import app as cli
from registry.db.models import Expert, Revision, RevisionEmbedding
from retrieval.embedder import TaskEmbedder
from retrieval.fusion import WITH_INPUTS, WORDS_ONLY, FusionWeights
from retrieval.lexical import LEXICAL_VERSION, LexicalEncoder, lexical_scores
from tests.fixtures.registry import Hub, open_hub

BASE_MODEL = "tiny/llama"
FOOD_CHAT = "Chat in Chinese about food and restaurants."
EXPERTS: dict[str, dict[str, Any]] = {
    "alice/food-hans": {
        "task_description": FOOD_CHAT,
        "sample_inputs": [
            "你们这里有什么好吃的？",
            "我想点一份面条。",
            "这家餐厅的菜很好吃。",
            "请给我们看看菜单。",
        ],
    },
    "alice/food-hant": {
        "task_description": FOOD_CHAT,
        "sample_inputs": [
            "你們這裡有什麼好吃的？",
            "我想點一份麵條。",
            "這家餐廳的菜很好吃。",
            "請給我們看看菜單。",
        ],
    },
    "bob/sql": {
        "task_description": "Write a SQL query that answers a question about a database table.",
        "sample_inputs": ["How many customers live in Paris?", "List the ten priciest products."],
    },
    "carol/reviews-de": {
        "task_description": "Translate English sentences into German.",
        "sample_inputs": [
            "I loved the film, the acting was superb.",
            "The plot was dull and far too long.",
            "A wonderful movie with a moving soundtrack.",
            "The worst film I have seen this year.",
        ],
    },
    "carol/opinion": {
        "task_description": "Tell whether a text expresses a positive or a negative opinion.",
        "sample_inputs": [
            "The council approved the new budget on Monday.",
            "Heavy rain closed two schools in the north.",
            "The central bank kept interest rates unchanged.",
            "The museum reopened after a long renovation.",
        ],
    },
}
TRADITIONAL_QUERY = ["麵條和餃子哪個好吃？", "請問這道菜辣不辣？"]


@pytest.fixture
def blob_store_url(tmp_path: Path) -> str:
    """Search never reads blobs: the local folder is enough."""
    return (tmp_path / "blobs").as_uri()


@pytest.fixture
def catalog(hub: Hub) -> None:
    tokens = {user: hub.token(user) for user in ("alice", "bob", "carol")}
    for seed, (expert, metadata) in enumerate(EXPERTS.items()):
        response = hub.upload(
            expert, lora_adapter(seed=seed), token=tokens[expert.split("/")[0]], metadata=metadata
        )
        assert response.status_code == 201, response.text


def search(hub: Hub, **body: Any) -> dict[str, Any]:
    response = hub.client.post("/api/v1/search", json={"base_model": BASE_MODEL, **body})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def by_id(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {result["id"]: result for result in answer["results"]}


def test_the_lexical_stage_puts_the_expert_of_the_querys_script_first(
    hub: Hub, catalog: None
) -> None:
    answer = search(hub, examples=TRADITIONAL_QUERY)
    results = by_id(answer)
    hans, hant = (
        results["alice/food-hans"]["score_parts"],
        results["alice/food-hant"]["score_parts"],
    )
    assert hans["dense"] > hant["dense"]  # the dense model alone would rank them the other way
    assert hant["lexical"] > hans["lexical"]
    assert answer["results"][0]["id"] == "alice/food-hant"
    assert answer["scoring"] == {
        "weights": {"dense": 0.25, "description": 0.0, "lexical": 0.75},
        "lexical": LEXICAL_VERSION,
        "rerank_depth": 50,
    }


def test_the_description_part_puts_the_expert_a_query_in_words_describes_first(
    hub: Hub, catalog: None
) -> None:
    answer = search(hub, query="is this movie review positive or negative")
    results = by_id(answer)
    translator, opinion = (
        results["carol/reviews-de"]["score_parts"],
        results["carol/opinion"]["score_parts"],
    )
    assert translator["dense"] > opinion["dense"]  # the film-review inputs mislead the dense part
    assert opinion["description"] > translator["description"]
    assert answer["results"][0]["id"] == "carol/opinion"
    assert answer["scoring"]["weights"] == {"dense": 0.5, "description": 0.5, "lexical": 0.0}


@pytest.mark.parametrize(
    ("body", "weights"),
    [
        ({"examples": TRADITIONAL_QUERY}, WITH_INPUTS),
        ({"query": "write SQL for my table"}, WORDS_ONLY),
        ({"query": "Chinese food chat", "examples": TRADITIONAL_QUERY}, WITH_INPUTS),
    ],
)
def test_each_score_is_the_weighted_sum_of_parts_computed_from_the_texts(
    hub: Hub, catalog: None, body: dict[str, Any], weights: FusionWeights
) -> None:
    """Recomputed here from the texts alone: the model's cosines and the n-grams' cosines."""
    answer = search(hub, **body)
    assert answer["scoring"]["weights"] == {
        "dense": weights.dense,
        "description": weights.description,
        "lexical": weights.lexical,
    }
    embedder, encoder = TaskEmbedder(), LexicalEncoder()
    query_texts = [body["query"]] if "query" in body else []
    query_texts += body.get("examples", [])
    query_dense = embedder.embed_query(body.get("query"), body.get("examples", ()))
    [query_lexical] = encoder.encode([query_texts])
    scores = []
    for result in answer["results"]:
        card = EXPERTS[result["id"]]
        dense = float(
            embedder.embed_task(card["task_description"], card["sample_inputs"]) @ query_dense
        )
        [description] = embedder.embed_texts([card["task_description"]]) @ query_dense
        [card_lexical] = encoder.encode([[card["task_description"], *card["sample_inputs"]]])
        [lexical] = lexical_scores(query_lexical, [card_lexical])
        parts = result["score_parts"]
        assert parts["dense"] == pytest.approx(dense, abs=1e-5)
        assert parts["description"] == pytest.approx(float(description), abs=1e-5)
        assert parts["lexical"] == pytest.approx(lexical, abs=1e-3)  # stored as float16
        assert result["score"] == pytest.approx(
            weights.dense * parts["dense"]
            + weights.description * parts["description"]
            + weights.lexical * parts["lexical"],
            abs=1e-6,
        )
        scores.append(result["score"])
    assert scores == sorted(scores, reverse=True) and len(scores) == len(EXPERTS)


def set_embedding_of(hub: Hub, expert: str, **values: Any) -> None:
    """Overwrite columns of `expert`'s embedding row straight in SQL."""
    name = expert.split("/")[1]
    revision = select(Revision.id).join(Revision.expert).where(Expert.name == name)
    with hub.sessions() as session:
        session.execute(
            update(RevisionEmbedding)
            .where(RevisionEmbedding.revision_id.in_(revision))
            .values(**values)
        )
        session.commit()


def result_after_restart(hub: Hub, **body: Any) -> dict[str, Any]:
    """The Traditional-Chinese expert's result from a freshly started app on the same database."""
    with open_hub(hub.settings) as restarted:
        return by_id(search(restarted, **body))["alice/food-hant"]


def test_an_unreadable_stored_lexical_vector_leaves_the_expert_ranked_on_its_dense_part(
    hub: Hub, catalog: None, caplog: pytest.LogCaptureFixture
) -> None:
    set_embedding_of(hub, "alice/food-hant", lexical=b"\x01\x02\x03")
    result = result_after_restart(hub, examples=TRADITIONAL_QUERY)
    assert result["score_parts"]["lexical"] is None
    assert result["score"] == pytest.approx(
        WITH_INPUTS.dense * result["score_parts"]["dense"], abs=1e-6
    )
    assert "a lexical vector of 3 bytes is not 6 per term" in caplog.text


@pytest.mark.parametrize(
    "stored",
    [b"\x00" * 12, np.full(384, np.nan, dtype="<f4").tobytes(), bytes(384 * 4)],
    ids=["short", "nan", "zero"],
)
def test_an_unreadable_stored_description_vector_leaves_its_part_out(
    hub: Hub, catalog: None, caplog: pytest.LogCaptureFixture, stored: bytes
) -> None:
    set_embedding_of(hub, "alice/food-hant", description_vector=stored)
    result = result_after_restart(hub, query=FOOD_CHAT)
    assert result["score_parts"]["description"] is None
    assert result["score"] == pytest.approx(
        WORDS_ONLY.dense * result["score_parts"]["dense"], abs=1e-6
    )
    assert f"an unreadable description vector ({len(stored)} bytes) is left out" in caplog.text


@pytest.mark.parametrize(
    ("stored", "part"),
    [
        ({"lexical": None, "lexical_version": None}, "lexical"),  # a row from before 0008
        ({"lexical_version": "char_wb1-3.hash20.log1p.top1024.v0"}, "lexical"),  # other recipe
        ({"description_vector": None}, "description"),  # a row from before 0009
    ],
    ids=["lexical-missing", "lexical-other-recipe", "description-missing"],
)
def test_an_expert_without_a_current_part_vector_is_found_until_reembed_gives_it_one(
    hub: Hub, catalog: None, stored: dict[str, Any], part: str
) -> None:
    set_embedding_of(hub, "alice/food-hant", **stored)
    query = {"query": FOOD_CHAT, "examples": TRADITIONAL_QUERY}
    assert result_after_restart(hub, **query)["score_parts"][part] is None
    env = {
        "COMPEFT_HUB_DATABASE_URL": hub.settings.sqlalchemy_url,
        "COMPEFT_HUB_BLOB_STORE_URL": hub.settings.storage_url,
    }
    reembedded = CliRunner().invoke(cli, ["reembed"], env=env)
    assert reembedded.exit_code == 0, reembedded.output
    assert "re-embedded 1 expert(s)" in reembedded.stdout
    assert f"{len(EXPERTS) - 1} already current" in reembedded.stdout
    assert result_after_restart(hub, **query)["score_parts"][part] > 0
    assert search(hub, examples=TRADITIONAL_QUERY)["results"][0]["id"] == "alice/food-hant"
