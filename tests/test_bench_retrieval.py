"""bench/retrieval.py --quick runs end to end and ends with its JSON summary line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_retrieval_bench_reports_latency_and_recall():
    completed = subprocess.run(
        [sys.executable, "-m", "bench.retrieval", "--quick"],
        cwd=REPOSITORY,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=500,
        check=True,
    )
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["n"] == 2000
    assert summary["p99_ms"] >= summary["p50_ms"] > 0
    assert summary["recall_at_10"] >= 0.95
