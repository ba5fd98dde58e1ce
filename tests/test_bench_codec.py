"""bench/codec.py --quick runs and prints its summary as the last line."""

from __future__ import annotations

from tests.bench_runs import run_bench


def test_codec_bench_quick_prints_the_summary_json():
    output, summary = run_bench("bench.codec", "--quick")
    assert set(summary) == {
        "bits_per_param",
        "vs_entropy",
        "ratio_vs_fp16",
        "encode_mparams_s",
        "decode_mparams_s",
    }
    assert 0.5 < summary["bits_per_param"] < 1.0  # density 0.1: bound 0.569 + headers
    assert summary["ratio_vs_fp16"] > 10
    assert "baseline_topk_2bit" in output
