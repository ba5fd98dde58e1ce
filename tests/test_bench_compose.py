"""bench/compose.py: --quick prints its summary last, and the reference loop computes what ours does."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaForCausalLM

from bench.compose import TINY_LLAMA, random_experts, run, tiny_llama_workload, weighted_state_dict
from compeft_core.compose import compose
from tests.bench_runs import run_bench


def test_compose_bench_quick_prints_the_summary_json():
    output, summary = run_bench("bench.compose", "--quick")
    assert set(summary) == {
        "ours_s",
        "floor_s",
        "reference_s",
        "ratio_vs_floor",
        "ratio_vs_reference",
    }
    assert all(math.isfinite(value) and value > 0 for value in summary.values())
    assert summary["ratio_vs_floor"] == pytest.approx(summary["ours_s"] / summary["floor_s"])
    assert summary["ratio_vs_reference"] == pytest.approx(
        summary["ours_s"] / summary["reference_s"]
    )
    for method in ("ours", "floor", "reference"):
        assert method in output
    assert "NGOpt chose" in output


def test_reference_merge_is_our_lorahub_composition():
    model = LlamaForCausalLM(TINY_LLAMA)
    experts = random_experts(model, 3, rank=4)
    weights = [0.5, -1.2, 0.3]
    reference = weighted_state_dict(weights, [dict(expert.tensors) for expert in experts])
    ours = compose(experts, weights, mode="lorahub").tensors
    assert reference.keys() == ours.keys()
    for key, tensor in reference.items():
        torch.testing.assert_close(ours[key], tensor)


def test_reference_loop_and_ours_spend_the_same_forwards_and_agree():
    result = run(tiny_llama_workload(shots=2), experts=3, rank=8, steps=6, seed=0, rounds=1)
    ours, floor, reference = (result.timings[m].outcome for m in ("ours", "floor", "reference"))
    assert ours.forwards == floor.forwards == reference.forwards == 6
    assert ours.optimizer == reference.optimizer
    assert result.reference_loss_through_composer == pytest.approx(reference.loss, rel=1e-5)
