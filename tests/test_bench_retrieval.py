"""bench/retrieval.py --quick runs end to end and ends with its JSON summary line."""

import pytest

from tests.bench_runs import run_bench


@pytest.mark.slow
def test_quick_retrieval_bench_reports_latency_and_recall():
    _, summary = run_bench("bench.retrieval", "--quick", timeout=500)
    assert summary["n"] == 2000
    for kind in ("", "words_"):  # five-input queries, word queries
        assert summary[f"{kind}p99_ms"] >= summary[f"{kind}p50_ms"] > 0
        assert summary[f"{kind}dense_only_p50_ms"] > 0  # the baseline, measured in the same run
        assert summary[f"{kind}recall_at_10"] >= 0.95


@pytest.mark.slow
def test_quick_methods_bench_reports_every_method_on_both_parts():
    _, summary = run_bench("bench.retrieval_methods", "--quick", timeout=500)
    assert summary["tasks"] == 40
    for kind in ("inputs", "words"):
        for method in (
            "dense",
            "tfidf",
            "hashed",
            "dense+tfidf",
            "dense+hashed",
            "rerank50",
            "hub",
        ):
            for part in ("tuning", "heldout"):
                top1, top3 = (summary[f"{kind}_{method}_{part}_top{n}"] for n in (1, 3))
                assert 0 <= top1 <= top3 <= 1
        # The fusion weight is chosen on the tuning part from a grid that includes dense alone.
        assert summary[f"{kind}_dense+tfidf_tuning_top1"] >= summary[f"{kind}_dense_tuning_top1"]
