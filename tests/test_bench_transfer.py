"""bench/upload.py and bench/fetch.py --quick run end to end and print their summary last.

Both start a real hub process on loopback; the figures are only checked for sanity (the machine
is shared, so no timing is asserted).
"""

from __future__ import annotations

from tests.bench_runs import run_bench


def test_upload_bench_quick_prints_throughput_and_ratio():
    output, summary = run_bench("bench.upload", "--quick")
    assert {"upload_mb_s", "download_mb_s", "ratio"} <= set(summary)
    assert summary["upload_mb_s"] > 0 and summary["download_mb_s"] > 0
    assert summary["ratio"] > 10
    assert summary["backends"] == ["local"]
    assert "compress" in output and "wire" in output


def test_fetch_bench_quick_prints_bytes_and_speedup():
    output, summary = run_bench("bench.fetch", "--quick")
    assert {"compressed_bytes", "uncompressed_bytes", "speedup"} <= set(summary)
    assert 0 < summary["compressed_bytes"] * 10 < summary["uncompressed_bytes"]
    assert summary["speedup"] > 1
    assert "at 100 Mbit/s" in output
