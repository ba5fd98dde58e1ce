"""The hard retrieval set (bench/retrieval_set.py): its size, its fixed split, its word queries."""

from bench.retrieval_set import CARD_INPUTS, PARTS, QUERY_INPUTS, load_set, part_of
from bench.retrieval_word_queries import WORD_QUERIES


def test_the_set_has_hundreds_of_tasks_split_into_two_parts_with_unseen_query_inputs():
    tasks = load_set()
    assert len(tasks) >= 200
    assert len({task.name for task in tasks}) == len(tasks)
    assert {task.part for task in tasks} == set(PARTS)
    assert min(sum(task.part == part for task in tasks) for part in PARTS) >= 0.4 * len(tasks)
    for task in tasks:
        assert 1 <= len(task.card_inputs) <= CARD_INPUTS
        assert not set(task.card_inputs) & set(task.query_inputs)
        queries = list(task.queries())
        assert queries and all(len(group) == QUERY_INPUTS for group in queries)


def test_the_split_is_fixed_by_the_seed():
    first, again = load_set(), load_set()
    assert [(t.name, t.part, t.card_inputs) for t in first] == [
        (t.name, t.part, t.card_inputs) for t in again
    ]
    other = load_set(seed=15)
    assert [t.card_inputs for t in other] != [t.card_inputs for t in first]
    assert part_of("chatterbot-english-ai") == part_of("chatterbot-english-ai")


def test_word_queries_name_tasks_of_the_set_and_differ_from_their_cards():
    tasks = {task.name: task for task in load_set()}
    assert len(WORD_QUERIES) >= 60
    assert set(WORD_QUERIES) <= set(tasks)
    for name, query in WORD_QUERIES.items():
        assert query.lower() != tasks[name].description.lower()
