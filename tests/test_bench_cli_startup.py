"""bench/cli_startup.py --quick times the command and its baseline and prints the summary last."""

from __future__ import annotations

import json
import subprocess
import sys


def test_cli_startup_bench_quick_prints_the_summary_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli_startup", "--quick"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(summary) == {
        "help_s",
        "baseline_s",
        "speedup_vs_baseline",
        "target_s",
        "meets_target",
    }
    assert summary["help_s"] > 0 and summary["baseline_s"] > 0 and summary["target_s"] == 1.0
    assert "compeft-hub pull --help" in done.stdout and "python -c pass" in done.stdout
