"""bench/quantised_base.py: the round-to-nearest quantiser, the 2 x 2 summary, and its quick run."""

from __future__ import annotations

import json

import pytest
import torch

from bench.quantised_base import (
    FORMS,
    FULL_PRECISION,
    RTN_GROUP,
    RTN_VARIANT,
    VARIANTS,
    rtn_quantise,
    summarise,
)
from tests.bench_runs import run_bench


def test_rtn_keeps_each_group_on_sixteen_levels_from_its_minimum_to_its_maximum():
    weight = torch.randn(6, 3 * RTN_GROUP, generator=torch.Generator().manual_seed(4))
    weight[0, :RTN_GROUP] = 0.25  # a constant group stays as it is
    quantised = rtn_quantise(weight)
    groups, original = (w.reshape(6, 3, RTN_GROUP) for w in (quantised, weight))
    low, high = original.amin(dim=-1), original.amax(dim=-1)
    step = (high - low) / 15
    torch.testing.assert_close(groups.amin(dim=-1), low)
    torch.testing.assert_close(groups.amax(dim=-1), high)
    assert (groups - original).abs().max() <= step.max() / 2 + 1e-6
    assert max(len(torch.unique(group)) for group in groups.reshape(-1, RTN_GROUP)) <= 16
    assert torch.equal(quantised[0, :RTN_GROUP], weight[0, :RTN_GROUP])


def test_rtn_refuses_a_width_that_is_not_whole_groups():
    with pytest.raises(ValueError, match="not a multiple of the group size"):
        rtn_quantise(torch.ones(2, RTN_GROUP + 1))


def _task(own: float, other: float, trained_on: str) -> dict:
    other_variant = next(v for v in VARIANTS if v != trained_on)
    return {f"{trained_on}/{form}": own for form in FORMS} | {
        f"{other_variant}/{form}": other for form in FORMS
    }


def test_the_summary_is_the_mean_table_and_the_drop_on_the_other_variant():
    per_task = {
        name: {
            "base": {v: 0.2 for v in VARIANTS},
            "experts": {
                FULL_PRECISION: {"test": _task(own, own - 0.1, FULL_PRECISION)},
                RTN_VARIANT: {"test": _task(own, own - 0.3, RTN_VARIANT)},
            },
        }
        for name, own in (("a", 0.8), ("b", 0.6))
    }
    summary = summarise(per_task)
    assert summary["tasks"] == 2 and summary["base"] == {v: pytest.approx(0.2) for v in VARIANTS}
    assert summary["table"][FULL_PRECISION][f"{FULL_PRECISION}/fp16"] == pytest.approx(0.7)
    assert summary["table"][RTN_VARIANT][f"{FULL_PRECISION}/compressed"] == pytest.approx(0.4)
    assert summary["cross_variant_drop"] == {form: pytest.approx(0.2) for form in FORMS}


@pytest.mark.slow
def test_quick_run_trains_on_both_bases_and_scores_every_cell(tmp_path):
    out = tmp_path / "report.md"
    _, summary = run_bench("bench.quantised_base", "--quick", "--out", str(out), timeout=600)
    assert set(summary["table"]) == set(VARIANTS)
    for row in summary["table"].values():
        assert set(row) == {f"{v}/{f}" for v in VARIANTS for f in FORMS}
        assert all(0 <= accuracy <= 1 for accuracy in row.values())
    results = json.loads(out.with_suffix(".json").read_text())
    (task,) = results["tasks"].values()
    assert all(0 < expert["bits_per_param"] < 16 for expert in task["experts"].values())
    report = out.read_text()
    assert f"| {RTN_VARIANT} |" in report and "Mean drop on the other variant" in report
    assert "(margin 0.02)" in report
    out.unlink()
    _, rewritten = run_bench("bench.quantised_base", "--report", "--out", str(out))
    assert rewritten == summary and out.read_text() == report
