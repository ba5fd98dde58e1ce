"""bench/upload.py and bench/fetch.py --quick run end to end and print their summary last.

Both start a real hub process on loopback; the figures are only checked for sanity (the machine
is shared, so no timing is asserted).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]


def run_quick(module: str) -> tuple[str, dict[str, Any]]:
    """The output of `python -m <module> --quick` and its last line as JSON."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--quick"],
        check=False,
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout, json.loads(done.stdout.strip().splitlines()[-1])


def test_upload_bench_quick_prints_throughput_and_ratio():
    output, summary = run_quick("bench.upload")
    assert {"upload_mb_s", "download_mb_s", "ratio"} <= set(summary)
    assert summary["upload_mb_s"] > 0 and summary["download_mb_s"] > 0
    assert summary["ratio"] > 10
    assert summary["backends"] == ["local"]
    assert "compress" in output and "wire" in output


def test_fetch_bench_quick_prints_bytes_and_speedup():
    output, summary = run_quick("bench.fetch")
    assert {"compressed_bytes", "uncompressed_bytes", "speedup"} <= set(summary)
    assert 0 < summary["compressed_bytes"] * 10 < summary["uncompressed_bytes"]
    assert summary["speedup"] > 1
    assert "at 100 Mbit/s" in output
