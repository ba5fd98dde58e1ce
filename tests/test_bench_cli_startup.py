"""bench/cli_startup.py --quick times the command and its baseline and prints the summary last."""

from __future__ import annotations

from tests.bench_runs import run_bench


def test_cli_startup_bench_quick_prints_the_summary_json() -> None:
    output, summary = run_bench("bench.cli_startup", "--quick")
    assert set(summary) == {
        "help_s",
        "baseline_s",
        "speedup_vs_baseline",
        "target_s",
        "meets_target",
    }
    assert summary["help_s"] > 0 and summary["baseline_s"] > 0 and summary["target_s"] == 1.0
    assert "compeft-hub pull --help" in output and "python -c pass" in output
