"""The retrieval latency bench's experts and queries: generated descriptions, words, inputs.

Descriptions are framing x task x object x topic x detail, so no two are the same and any number
up to 3.6 million can be drawn; word queries are drawn the same way in a user's phrasing. Input
queries are the real-task set's groups of five unseen inputs (`bench/retrieval_set.py`), so their
length and scripts are those a client sends.
"""

from __future__ import annotations

import numpy as np

from bench.retrieval_set import load_set

FRAMINGS = (
    "{Task} about {topic}{detail}.",
    "Adapter trained to {task} about {topic}{detail}.",
    "LoRA expert that can {task} on {topic}{detail}.",
    "Fine-tuned to {task} covering {topic}{detail}.",
)
QUERY_FRAMINGS = (
    "I need a model that can {task} about {topic}{detail}",
    "{task} on {topic}",
    "looking for an adapter to {task} covering {topic}",
)
TASKS = (
    "summarise {obj}",
    "classify the sentiment of {obj}",
    "translate {obj} into French",
    "translate {obj} into German",
    "extract named entities from {obj}",
    "answer questions about {obj}",
    "detect toxic language in {obj}",
    "write headlines for {obj}",
    "correct the grammar of {obj}",
    "paraphrase {obj}",
    "classify the topic of {obj}",
    "detect spam among {obj}",
    "extract keywords from {obj}",
    "generate replies to {obj}",
    "rate the readability of {obj}",
    "detect sarcasm in {obj}",
    "find factual errors in {obj}",
    "simplify {obj}",
    "tag the intent of {obj}",
    "summarise {obj} as bullet points",
    "extract dates and places from {obj}",
    "rewrite {obj} in a formal tone",
    "detect the language of {obj}",
    "score the relevance of {obj}",
    "classify the urgency of {obj}",
)
OBJECTS = (
    "news articles", "tweets", "customer emails", "scientific abstracts", "legal contracts",
    "product reviews", "clinical notes", "forum posts", "movie reviews", "recipes",
    "support tickets", "patent claims", "job postings", "financial reports", "song lyrics",
    "restaurant reviews", "chat messages", "meeting transcripts", "textbook paragraphs",
    "travel blogs",
)  # fmt: skip
TOPICS = (
    "climate policy", "football", "cryptocurrency", "public health", "machine learning",
    "elections", "space exploration", "real estate", "video games", "nutrition",
    "renewable energy", "banking", "tourism", "education", "cybersecurity", "agriculture",
    "fashion", "automobiles", "pharmaceuticals", "music festivals", "immigration",
    "stock markets", "wildlife", "smartphones", "mental health", "aviation", "insurance",
    "architecture", "basketball", "tennis", "chess", "cooking", "gardening", "parenting",
    "retail", "shipping", "oil and gas", "semiconductors", "quantum computing", "taxation",
    "labour law", "human rights", "urban planning", "public transport", "the film industry",
    "photography", "astronomy", "genetics", "vaccines", "dentistry", "pets", "fitness",
    "cycling", "hiking", "wine", "coffee", "e-commerce", "social media", "telecommunications",
    "startups",
)  # fmt: skip
DETAILS = (
    "", " in one sentence", " for a general audience", " for domain experts",
    " with short answers", " in British English", " written by non-native speakers",
    " from the last decade", " with noisy OCR text", " in a friendly tone", " for a mobile app",
    " at scale",
)  # fmt: skip


def generate_descriptions(n: int, seed: int = 0) -> list[str]:
    """n distinct task descriptions; the first m of n are the descriptions for m (nested sets)."""
    sizes = (len(FRAMINGS), len(TASKS), len(OBJECTS), len(TOPICS), len(DETAILS))
    codes = np.random.default_rng(seed).choice(int(np.prod(sizes)), size=n, replace=False)
    descriptions = []
    for framing, task, obj, topic, detail in zip(*np.unravel_index(codes, sizes), strict=True):
        task_text = TASKS[task].format(obj=OBJECTS[obj])
        descriptions.append(
            FRAMINGS[framing].format(
                Task=task_text[0].upper() + task_text[1:],
                task=task_text,
                topic=TOPICS[topic],
                detail=DETAILS[detail],
            )
        )
    return descriptions


def generate_queries(n: int, seed: int = 1) -> list[str]:
    """n request texts in the words a user might type (not copies of any description)."""
    rng = np.random.default_rng(seed)
    return [
        QUERY_FRAMINGS[rng.integers(len(QUERY_FRAMINGS))].format(
            task=TASKS[rng.integers(len(TASKS))].format(obj=OBJECTS[rng.integers(len(OBJECTS))]),
            topic=TOPICS[rng.integers(len(TOPICS))],
            detail=DETAILS[rng.integers(len(DETAILS))],
        )
        for _ in range(n)
    ]


def generate_input_queries(n: int, seed: int = 2) -> list[tuple[str, ...]]:
    """n groups of five inputs of real tasks in a seeded order (cycled when the set has fewer)."""
    groups = [tuple(group) for task in load_set() for group in task.queries()]
    order = np.random.default_rng(seed).permutation(len(groups))
    return [groups[order[i % len(groups)]] for i in range(n)]
