"""bench/retrieval.py --quick runs end to end and ends with its JSON summary line."""

import pytest

from tests.bench_runs import run_bench


@pytest.mark.slow
def test_quick_retrieval_bench_reports_latency_and_recall():
    _, summary = run_bench("bench.retrieval", "--quick", timeout=500)
    assert summary["n"] == 2000
    assert summary["p99_ms"] >= summary["p50_ms"] > 0
    assert summary["recall_at_10"] >= 0.95
